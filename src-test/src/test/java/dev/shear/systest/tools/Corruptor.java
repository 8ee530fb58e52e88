package dev.shear.systest.tools;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Damages images on purpose, at offsets computed from their own metadata (QEMU iotest 060 style):
 * {@link #poke} writes bytes, the other helpers read header fields and walk L1/L2/refcount tables so a
 * test can say "point guest cluster 2 at the host cluster of guest cluster 0" without hard-coding a
 * layout. All multi-byte values are big-endian, as on disk. Everything here is independent of Shear's
 * engine.
 */
public final class Corruptor {
    private Corruptor() {
    }

    /** Writes {@code bytes} at file {@code offset} (the file grows if needed). */
    public static void poke(Path image, long offset, byte[] bytes) {
        try (FileChannel ch = FileChannel.open(image, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.wrap(bytes);
            while (b.hasRemaining()) {
                ch.write(b, offset + b.position());
            }
        } catch (IOException e) {
            throw new UncheckedIOException("poke " + image + " at 0x" + Long.toHexString(offset), e);
        }
    }

    public static void pokeLong(Path image, long offset, long value) {
        poke(image, offset, ByteBuffer.allocate(8).putLong(0, value).array());
    }

    public static void pokeInt(Path image, long offset, int value) {
        poke(image, offset, ByteBuffer.allocate(4).putInt(0, value).array());
    }

    /** Reads {@code length} bytes at {@code offset}; bytes past the end of the file read as zeros. */
    public static byte[] peek(Path image, long offset, int length) {
        try (FileChannel ch = FileChannel.open(image, StandardOpenOption.READ)) {
            ByteBuffer b = ByteBuffer.allocate(length);
            while (b.hasRemaining()) {
                if (ch.read(b, offset + b.position()) < 0) {
                    break;
                }
            }
            return b.array();
        } catch (IOException e) {
            throw new UncheckedIOException("peek " + image + " at 0x" + Long.toHexString(offset), e);
        }
    }

    public static long peekLong(Path image, long offset) {
        return ByteBuffer.wrap(peek(image, offset, 8)).getLong();
    }

    public static int peekInt(Path image, long offset) {
        return ByteBuffer.wrap(peek(image, offset, 4)).getInt();
    }

    /** Sets the file length (grow with zeros, or truncate). */
    public static void setLength(Path image, long length) {
        try (FileChannel ch = FileChannel.open(image, StandardOpenOption.WRITE)) {
            if (length < ch.size()) {
                ch.truncate(length);
            } else if (length > ch.size()) {
                ch.write(ByteBuffer.allocate(1), length - 1);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("set length of " + image, e);
        }
    }

    /** The header of a qcow2 image. */
    public static Qcow2HeaderFields header(Path image) {
        return Qcow2HeaderFields.decode(ByteBuffer.wrap(peek(image, 0, 112)));
    }

    /** File offset of active L1 entry {@code index}. */
    public static long l1EntryPosition(Path image, long index) {
        Qcow2HeaderFields h = header(image);
        if (index < 0 || index >= Integer.toUnsignedLong(h.l1Size())) {
            throw new IllegalArgumentException("L1 index: " + index + " (expected: < l1_size " + h.l1Size() + ")");
        }
        return h.l1TableOffset() + 8 * index;
    }

    /**
     * File offset of the (first 64 bits of the) active L2 entry that maps {@code guestOffset}. The L2
     * table must exist: write something in the same L2 range first.
     */
    public static long l2EntryPosition(Path image, long guestOffset) {
        Qcow2HeaderFields h = header(image);
        long clusterIndex = guestOffset >>> h.clusterBits();
        long l1Index = clusterIndex / h.l2Entries();
        long l2Index = clusterIndex % h.l2Entries();
        long l1 = peekLong(image, l1EntryPosition(image, l1Index));
        long l2Table = l1 & Qcow2HeaderFields.L1_OFFSET_MASK;
        if (l2Table == 0) {
            throw new IllegalStateException("guest offset 0x" + Long.toHexString(guestOffset)
                    + ": no L2 table (L1[" + l1Index + "] = 0x" + Long.toHexString(l1) + ")");
        }
        return l2Table + l2Index * h.l2EntryBytes();
    }

    /** The active L2 entry (first 64 bits) that maps {@code guestOffset}. */
    public static long l2Entry(Path image, long guestOffset) {
        return peekLong(image, l2EntryPosition(image, guestOffset));
    }

    /** The host cluster offset of a standard (not compressed) mapping of {@code guestOffset}; 0 if none. */
    public static long hostClusterOffset(Path image, long guestOffset) {
        long e = l2Entry(image, guestOffset);
        if ((e & Qcow2HeaderFields.COMPRESSED) != 0) {
            throw new IllegalStateException("guest offset 0x" + Long.toHexString(guestOffset) + " is compressed");
        }
        return e & Qcow2HeaderFields.L2_OFFSET_MASK;
    }

    /** Overwrites the active L2 entry (first 64 bits) that maps {@code guestOffset}. */
    public static void setL2Entry(Path image, long guestOffset, long entry) {
        pokeLong(image, l2EntryPosition(image, guestOffset), entry);
    }

    /** The on-disk refcount of host cluster {@code hostClusterIndex} (0 when no block covers it). */
    public static long refcount(Path image, long hostClusterIndex) {
        RefcountSlot s = refcountSlot(image, hostClusterIndex, false);
        return s == null ? 0 : s.read(image);
    }

    /** Overwrites the on-disk refcount of host cluster {@code hostClusterIndex}; its block must exist. */
    public static void setRefcount(Path image, long hostClusterIndex, long value) {
        refcountSlot(image, hostClusterIndex, true).write(image, value);
    }

    /** Where one refcount lives: the byte, and for sub-byte widths the bit shift (qcow2-format.md §5.1). */
    private record RefcountSlot(long bytePosition, int bits, int shift) {
        long read(Path image) {
            if (bits < 8) {
                int b = peek(image, bytePosition, 1)[0] & 0xff;
                return (b >>> shift) & ((1 << bits) - 1);
            }
            byte[] raw = peek(image, bytePosition, bits / 8);
            long v = 0;
            for (byte x : raw) {
                v = (v << 8) | (x & 0xff);
            }
            return v;
        }

        void write(Path image, long value) {
            if (bits < 8) {
                long max = (1L << bits) - 1;
                if (value < 0 || value > max) {
                    throw new IllegalArgumentException("refcount: " + value + " (expected: 0.." + max + ")");
                }
                int b = peek(image, bytePosition, 1)[0] & 0xff;
                int mask = ((1 << bits) - 1) << shift;
                b = (b & ~mask) | ((int) value << shift);
                poke(image, bytePosition, new byte[] {(byte) b});
                return;
            }
            byte[] raw = new byte[bits / 8];
            for (int i = raw.length - 1; i >= 0; i--) {
                raw[i] = (byte) value;
                value >>>= 8;
            }
            poke(image, bytePosition, raw);
        }
    }

    private static RefcountSlot refcountSlot(Path image, long hostClusterIndex, boolean mustExist) {
        Qcow2HeaderFields h = header(image);
        long perBlock = h.refcountBlockEntries();
        long tableIndex = hostClusterIndex / perBlock;
        long blockIndex = hostClusterIndex % perBlock;
        long tableEntries = Integer.toUnsignedLong(h.refcountTableClusters()) * h.clusterSize() / 8;
        long block = tableIndex < tableEntries
                ? peekLong(image, h.refcountTableOffset() + 8 * tableIndex) & Qcow2HeaderFields.REFTABLE_OFFSET_MASK
                : 0;
        if (block == 0) {
            if (mustExist) {
                throw new IllegalStateException("host cluster " + hostClusterIndex + ": no refcount block");
            }
            return null;
        }
        int bits = h.refcountBits();
        long bitPos = blockIndex * bits;
        return new RefcountSlot(block + bitPos / 8, bits, (int) (bitPos % 8));
    }
}
