package dev.shear.qcow2;

import java.nio.ByteBuffer;

/**
 * Reads and writes entries of a refcount block for every refcount_order 0..6
 * (qcow2-format.md §5.1, §15.7).
 *
 * <pre>
 *  order  bits  packing
 *  0..2   1,2,4 several entries per byte, entry 0 in the least significant bits of byte 0
 *  3      8     one byte
 *  4..6   16..64 big-endian
 * </pre>
 * Indices are absolute from index 0 of the buffer (its position is ignored and not moved), so a
 * block is one cluster-sized buffer or slice. A 64-bit refcount is returned as a raw long: values
 * at or above 2^63 read as negative and compare with {@link Long#compareUnsigned}.
 */
final class Refcounts {
    private Refcounts() {
    }

    /** log2 of the entries in one refcount block: {@code cluster_bits + 3 - refcount_order}. */
    static int refcountBlockBits(int clusterBits, int refcountOrder) {
        return clusterBits + 3 - refcountOrder;
    }

    /** Largest refcount an entry can hold: {@code 2^refcount_bits - 1} (all ones for order 6). */
    static long maxRefcount(int refcountOrder) {
        checkOrder(refcountOrder);
        return refcountOrder == 6 ? -1L : (1L << (1 << refcountOrder)) - 1;
    }

    /** Entry {@code index} of {@code block}. */
    static long get(ByteBuffer block, int refcountOrder, int index) {
        checkOrder(refcountOrder);
        checkIndex(block, refcountOrder, index);
        switch (refcountOrder) {
            case 0, 1, 2 -> {
                int bits = 1 << refcountOrder;
                int perByte = 8 >> refcountOrder;
                int b = Byte.toUnsignedInt(block.get(index / perByte));
                return (b >>> ((index % perByte) * bits)) & ((1 << bits) - 1);
            }
            default -> {
                int bytes = 1 << (refcountOrder - 3);
                int at = index * bytes;
                long v = 0;
                for (int i = 0; i < bytes; i++) {
                    v = (v << 8) | Byte.toUnsignedLong(block.get(at + i));
                }
                return v;
            }
        }
    }

    /**
     * Sets entry {@code index} of {@code block} to {@code value}, leaving neighbours in the same byte
     * untouched.
     *
     * @throws IllegalArgumentException if {@code value} exceeds {@link #maxRefcount} (unsigned)
     */
    static void set(ByteBuffer block, int refcountOrder, int index, long value) {
        checkOrder(refcountOrder);
        checkIndex(block, refcountOrder, index);
        if (Long.compareUnsigned(value, maxRefcount(refcountOrder)) > 0) {
            throw new IllegalArgumentException("refcount: " + Long.toUnsignedString(value) + " (expected: <= "
                    + Long.toUnsignedString(maxRefcount(refcountOrder)) + " for refcount_order "
                    + refcountOrder + ")");
        }
        switch (refcountOrder) {
            case 0, 1, 2 -> {
                int bits = 1 << refcountOrder;
                int perByte = 8 >> refcountOrder;
                int shift = (index % perByte) * bits;
                int mask = ((1 << bits) - 1) << shift;
                int at = index / perByte;
                int b = Byte.toUnsignedInt(block.get(at));
                block.put(at, (byte) ((b & ~mask) | ((int) value << shift)));
            }
            default -> {
                int bytes = 1 << (refcountOrder - 3);
                int at = index * bytes;
                for (int i = bytes - 1; i >= 0; i--) {
                    block.put(at + i, (byte) (value >>> (8 * (bytes - 1 - i))));
                }
            }
        }
    }

    private static void checkOrder(int refcountOrder) {
        if (refcountOrder < 0 || refcountOrder > Qcow2Limits.MAX_REFCOUNT_ORDER) {
            throw new IllegalArgumentException("refcount_order: " + refcountOrder + " (expected: 0..6)");
        }
    }

    private static void checkIndex(ByteBuffer block, int refcountOrder, int index) {
        long entries = ((long) block.limit() << 3) >>> refcountOrder;
        if (index < 0 || index >= entries) {
            throw new IndexOutOfBoundsException("refcount index: " + index + " (expected: 0.." + (entries - 1) + ")");
        }
    }
}
