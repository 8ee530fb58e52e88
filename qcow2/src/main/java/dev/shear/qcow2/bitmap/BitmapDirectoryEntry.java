package dev.shear.qcow2.bitmap;

import dev.shear.block.BlockException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.Objects;

/**
 * One bitmap directory entry (dirty-bitmaps.md §2.2), validated by {@link #validate} with the rules
 * of QEMU's check_dir_entry and load_bitmap (§3).
 *
 * <pre>
 *   0 u64 bitmap_table_offset   8 u32 bitmap_table_size   12 u32 flags
 *  16 u8  type                 17 u8  granularity_bits    18 u16 name_size   20 u32 extra_data_size
 *  24 extra data, then name, then zero padding to a multiple of 8
 * flags: bit 0 in_use, bit 1 auto, bit 2 extra_data_compatible, bits 3-31 reserved
 * </pre>
 *
 * @param tableOffset     cluster-aligned offset of the bitmap table
 * @param tableSize       entries of the bitmap table (unsigned 32-bit on disk)
 * @param flags           raw flags
 * @param type            1 = dirty tracking
 * @param granularityBits log2 of the bytes per bit
 * @param name            bitmap name, unique per image
 * @param extraData       type-specific extra data (none is defined; kept for rewriting), copied
 */
public record BitmapDirectoryEntry(long tableOffset, int tableSize, int flags, int type, int granularityBits,
        String name, byte[] extraData) {
    /** The bitmap may not match the data (not stored cleanly). */
    public static final int FLAG_IN_USE = 1;
    /** The bitmap records writes (enabled). */
    public static final int FLAG_AUTO = 1 << 1;
    /** Unknown extra data may be ignored and the bitmap used (spec; QEMU refuses it). */
    public static final int FLAG_EXTRA_DATA_COMPATIBLE = 1 << 2;
    /** Bits 3-31. */
    public static final int RESERVED_FLAGS = ~(FLAG_IN_USE | FLAG_AUTO | FLAG_EXTRA_DATA_COMPATIBLE);
    /** The only type defined. */
    public static final int TYPE_DIRTY_TRACKING = 1;

    // Field offsets inside an entry, for error offsets.
    static final int TABLE_OFFSET = 0;
    static final int TABLE_SIZE = 8;
    static final int FLAGS = 12;
    static final int TYPE = 16;
    static final int GRANULARITY_BITS = 17;
    static final int NAME_SIZE = 18;
    static final int EXTRA_DATA_SIZE = 20;

    public BitmapDirectoryEntry {
        Objects.requireNonNull(name, "name");
        extraData = extraData == null ? new byte[0] : extraData.clone();
    }

    /** A copy of the extra data. */
    @Override
    public byte[] extraData() {
        return extraData.clone();
    }

    public boolean inUse() {
        return (flags & FLAG_IN_USE) != 0;
    }

    public boolean auto() {
        return (flags & FLAG_AUTO) != 0;
    }

    public boolean extraDataCompatible() {
        return (flags & FLAG_EXTRA_DATA_COMPATIBLE) != 0;
    }

    /** Bytes of virtual disk per bit. */
    public long granularity() {
        return 1L << granularityBits;
    }

    /** Table entries as an unsigned number. */
    public long tableSizeUnsigned() {
        return Integer.toUnsignedLong(tableSize);
    }

    /**
     * True when the contents may be used: not in_use, and either no extra data or extra data the spec
     * lets us ignore (flag bit 2). Otherwise the bitmap must be preserved but not used.
     */
    public boolean usable() {
        return !inUse() && (extraData.length == 0 || extraDataCompatible());
    }

    /** Bytes this entry takes in the directory, padding included. */
    public long encodedSize() {
        long raw = BitmapLimits.ENTRY_HEADER_BYTES + (long) extraData.length
                + name.getBytes(StandardCharsets.UTF_8).length;
        return (raw + 7) & ~7L;
    }

    /**
     * Checks the entry against QEMU's check_dir_entry and, for a bitmap that is not in_use, the exact
     * table size load_bitmap requires for the current image size: type 1; granularity_bits 9..31;
     * name 1..1023 bytes; no reserved flags; table offset non-zero, aligned, ending below 2^63; table
     * size 1..2^27 covering at most 512 MiB. Extra data and flag bit 2 are accepted, as the spec
     * allows (QEMU refuses them; see {@link #usable()}).
     *
     * @param imageSize   virtual disk size in bytes
     * @param clusterBits the image's cluster_bits
     * @param resource    image name for messages
     * @param entryOffset file offset of this entry, for messages
     */
    public void validate(long imageSize, int clusterBits, String resource, long entryOffset) throws BlockException {
        String who = "bitmap '" + name + "': ";
        if (type != TYPE_DIRTY_TRACKING) {
            throw BlockException.format(resource, entryOffset + TYPE, "%stype: %d (expected: 1, dirty tracking)",
                    who, type);
        }
        if (granularityBits < BitmapLimits.MIN_GRANULARITY_BITS
                || granularityBits > BitmapLimits.MAX_GRANULARITY_BITS) {
            throw BlockException.format(resource, entryOffset + GRANULARITY_BITS,
                    "%sgranularity_bits: %d (expected: %d..%d)", who, granularityBits,
                    BitmapLimits.MIN_GRANULARITY_BITS, BitmapLimits.MAX_GRANULARITY_BITS);
        }
        int nameSize = name.getBytes(StandardCharsets.UTF_8).length;
        if (nameSize < 1 || nameSize > BitmapLimits.MAX_NAME) {
            throw BlockException.format(resource, entryOffset + NAME_SIZE, "%sname_size: %d (expected: 1..%d)", who,
                    nameSize, BitmapLimits.MAX_NAME);
        }
        if ((flags & RESERVED_FLAGS) != 0) {
            throw BlockException.format(resource, entryOffset + FLAGS,
                    "%sflags: 0x%x (expected: only bits 0-2: in_use, auto, extra_data_compatible)", who, flags);
        }
        long clusterSize = 1L << clusterBits;
        if (tableOffset == 0 || (tableOffset & (clusterSize - 1)) != 0 || tableOffset < 0) {
            throw BlockException.format(resource, entryOffset + TABLE_OFFSET,
                    "%sbitmap_table_offset: 0x%x (expected: non-zero, aligned to cluster size %d)", who,
                    tableOffset, clusterSize);
        }
        long entries = tableSizeUnsigned();
        if (entries == 0 || entries > BitmapLimits.MAX_TABLE_ENTRIES) {
            throw BlockException.format(resource, entryOffset + TABLE_SIZE,
                    "%sbitmap_table_size: %d (expected: 1..%d)", who, entries, BitmapLimits.MAX_TABLE_ENTRIES);
        }
        if (entries * clusterSize > BitmapLimits.MAX_DATA_BYTES) {
            throw BlockException.format(resource, entryOffset + TABLE_SIZE,
                    "%sbitmap_table_size: %d (expected: <= %d clusters, 512 MiB of bitmap data)", who, entries,
                    BitmapLimits.MAX_DATA_BYTES / clusterSize);
        }
        if (tableOffset > Long.MAX_VALUE - entries * 8) {
            throw BlockException.format(resource, entryOffset + TABLE_OFFSET,
                    "%sbitmap_table_offset: 0x%x (expected: offset + %d bytes <= 0x7fffffffffffffff)", who,
                    tableOffset, entries * 8);
        }
        if (!inUse()) {
            long required = BitmapTable.requiredTableSize(imageSize, granularityBits, clusterBits);
            if (entries != required) {
                throw BlockException.format(resource, entryOffset + TABLE_SIZE,
                        "%sbitmap_table_size: %d (expected: %d for image size %d at granularity %d)", who, entries,
                        required, imageSize, granularity());
            }
        }
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof BitmapDirectoryEntry e && tableOffset == e.tableOffset && tableSize == e.tableSize
                && flags == e.flags && type == e.type && granularityBits == e.granularityBits
                && name.equals(e.name) && Arrays.equals(extraData, e.extraData);
    }

    @Override
    public int hashCode() {
        return 31 * Objects.hash(tableOffset, tableSize, flags, type, granularityBits, name)
                + Arrays.hashCode(extraData);
    }

    @Override
    public String toString() {
        return "BitmapDirectoryEntry[name=" + name + ", tableOffset=0x" + Long.toHexString(tableOffset)
                + ", tableSize=" + tableSizeUnsigned() + ", flags=0x" + Integer.toHexString(flags) + ", type=" + type
                + ", granularityBits=" + granularityBits + ", extraData=" + HexFormat.of().formatHex(extraData) + "]";
    }
}
