package dev.shear.qcow2.bitmap;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Reads and checks a bitmap table; sizes and enumerates its data clusters (dirty-bitmaps.md §2.3).
 *
 * <pre>
 *  63 .. 56 | 55 ................ 9 | 8 .. 1   | 0
 *  reserved | data cluster offset   | reserved | all-ones flag (only with offset 0)
 *
 *  offset 0, bit 0 clear: the slice reads as zeros; offset 0, bit 0 set: all ones
 * </pre>
 */
public final class BitmapTable {
    /** Bits 9-55: data cluster offset (QEMU BME_TABLE_ENTRY_OFFSET_MASK). */
    public static final long OFFSET_MASK = 0x00fffffffffffe00L;
    /** Bits 1-8 and 56-63 (QEMU BME_TABLE_ENTRY_RESERVED_MASK). */
    public static final long RESERVED_MASK = 0xff000000000001feL;
    /** Bit 0: the unallocated slice reads as all ones (QEMU BME_TABLE_ENTRY_FLAG_ALL_ONES). */
    public static final long ALL_ONES = 1L;

    private BitmapTable() {
    }

    /**
     * Entries of a bitmap table needed for {@code imageSize} bytes at {@code 2^granularityBits} per bit:
     * {@code ceil(ceil(ceil(size / granularity) / 8) / cluster_size)}.
     */
    public static long requiredTableSize(long imageSize, int granularityBits, int clusterBits) {
        long bits = ceilShift(imageSize, granularityBits);
        long bytes = ceilShift(bits, 3);
        return ceilShift(bytes, clusterBits);
    }

    private static long ceilShift(long value, int shift) {
        return (value >>> shift) + ((value & ((1L << shift) - 1)) != 0 ? 1 : 0);
    }

    /**
     * Reads the table of {@code entry} and checks every entry ({@link #problem}). On entry
     * {@code entry} passed {@link BitmapDirectoryEntry#validate}; the size is re-bounded anyway.
     */
    public static long[] read(ImageFile file, BitmapDirectoryEntry entry, int clusterBits, String resource)
            throws IOException {
        long n = entry.tableSizeUnsigned();
        if (n == 0 || n > BitmapLimits.MAX_TABLE_ENTRIES || (n << clusterBits) > BitmapLimits.MAX_DATA_BYTES) {
            throw BlockException.format(resource, -1, "bitmap '%s': bitmap_table_size: %d (expected: 1..%d)",
                    entry.name(), n, BitmapLimits.MAX_DATA_BYTES >> clusterBits);
        }
        ByteBuffer b = ByteBuffer.allocate((int) n * 8);
        file.read(entry.tableOffset(), b);
        b.flip();
        long[] table = new long[(int) n];
        for (int i = 0; i < table.length; i++) {
            long e = b.getLong(i * 8);
            String problem = problem(e, clusterBits);
            if (problem != null) {
                throw BlockException.format(resource, entry.tableOffset() + i * 8L, "bitmap '%s': table entry %d: %s",
                        entry.name(), i, problem);
            }
            table[i] = e;
        }
        return table;
    }

    /**
     * What is wrong with a table entry, or null: reserved bits, the all-ones flag with an offset,
     * an unaligned offset (QEMU check_table_entry). Shape {@code "<what>: <value> (expected: ...)"}.
     */
    public static String problem(long entry, int clusterBits) {
        long reserved = entry & RESERVED_MASK;
        if (reserved != 0) {
            return String.format("reserved bits: 0x%x (expected: 0)", reserved);
        }
        long offset = entry & OFFSET_MASK;
        if (offset != 0 && (entry & ALL_ONES) != 0) {
            return String.format("all-ones flag: set with offset 0x%x (expected: only with offset 0)", offset);
        }
        if ((offset & ((1L << clusterBits) - 1)) != 0) {
            return String.format("offset: 0x%x (expected: cluster-aligned)", offset);
        }
        return null;
    }

    /** Data cluster offset of an entry, 0 when the slice is not allocated. */
    public static long dataOffset(long entry) {
        return entry & OFFSET_MASK;
    }

    /** True when an unallocated slice reads as all ones. */
    public static boolean isAllOnes(long entry) {
        return dataOffset(entry) == 0 && (entry & ALL_ONES) != 0;
    }

    /** Offsets of the data clusters a table references, in table order (for refcount checks). */
    public static long[] dataClusters(long[] table) {
        int n = 0;
        for (long e : table) {
            if (dataOffset(e) != 0) {
                n++;
            }
        }
        long[] out = new long[n];
        int i = 0;
        for (long e : table) {
            if (dataOffset(e) != 0) {
                out[i++] = dataOffset(e);
            }
        }
        return out;
    }

    /** The table as it sits on disk, for a writer. */
    public static ByteBuffer encode(long[] table) {
        ByteBuffer b = ByteBuffer.allocate(table.length * 8);
        for (long e : table) {
            b.putLong(e);
        }
        return b.flip();
    }
}
