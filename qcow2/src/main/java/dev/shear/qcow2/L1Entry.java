package dev.shear.qcow2;

/**
 * Static helpers over a 64-bit L1 table entry (qcow2-format.md §6.1).
 *
 * <pre>
 *  63 | 62 .. 56 | 55 ................ 9 | 8 .. 0
 *  C  | reserved | L2 table offset       | reserved
 *
 *  C (copied): the L2 table's refcount is exactly 1 (meaningful in the active L1 only)
 *  offset 0  : the L2 table and every cluster it would map are unallocated
 * </pre>
 */
final class L1Entry {
    /** Bits 9-55: L2 table offset (QEMU L1E_OFFSET_MASK). */
    static final long OFFSET_MASK = 0x00fffffffffffe00L;
    /** Bits 0-8 and 56-62 (QEMU L1E_RESERVED_MASK). */
    static final long RESERVED_MASK = 0x7f000000000001ffL;
    /** Bit 63: refcount == 1. */
    static final long COPIED = 1L << 63;

    private L1Entry() {
    }

    /** L2 table offset, 0 if unallocated. */
    static long offset(long entry) {
        return entry & OFFSET_MASK;
    }

    static boolean isCopied(long entry) {
        return (entry & COPIED) != 0;
    }

    /** Reserved bits that are set (0 for a well-formed entry). */
    static long reservedBits(long entry) {
        return entry & RESERVED_MASK;
    }

    /** An entry pointing at {@code l2Offset}, with the copied bit as given. */
    static long of(long l2Offset, boolean copied) {
        if ((l2Offset & ~OFFSET_MASK) != 0) {
            throw new IllegalArgumentException(String.format("L2 table offset: 0x%x (expected: bits 9-55 only)",
                    l2Offset));
        }
        return l2Offset | (copied ? COPIED : 0);
    }

    /**
     * What is wrong with {@code entry}, or null. Shape: {@code "<what>: <value> (expected: ...)"};
     * callers prefix the location ({@code "L1 entry 3: "}) as they know it.
     */
    static String problem(long entry, int clusterBits) {
        long reserved = reservedBits(entry);
        if (reserved != 0) {
            return String.format("reserved bits: 0x%x (expected: 0)", reserved);
        }
        long offset = offset(entry);
        if ((offset & ((1L << clusterBits) - 1)) != 0) {
            return String.format("L2 table offset: 0x%x (expected: cluster-aligned)", offset);
        }
        return null;
    }
}
