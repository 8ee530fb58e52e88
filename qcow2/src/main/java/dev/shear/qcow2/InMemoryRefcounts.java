package dev.shear.qcow2;

import java.util.HashMap;
import java.util.Map;

/**
 * The reference counts that the check computes by walking every reference (QEMU's "in-memory refcount
 * table", IMRT): one counter per host cluster of the image file (qcow2-format.md §12).
 *
 * <p>Design notes:
 * <ul>
 *   <li>Sized from the <em>file</em> length, never from a value read from the image: a reference past
 *       the end of the file is reported as an error by the caller before it gets here, so the array
 *       needs at most {@code ceil(fileSize / clusterSize) + 1} counters (the extra one takes the last,
 *       partial cluster of a range that ends less than one cluster past EOF, which QEMU tolerates).</li>
 *   <li>Compact: 2 bytes per cluster in pages of {@value #PAGE_ENTRIES} allocated on first touch; the
 *       rare counter that reaches {@code 0xffff} moves to an overflow map, so counts stay exact for
 *       every refcount width (QEMU stores them at the image's own refcount width).</li>
 *   <li>A counter never exceeds the image's maximum refcount {@code 2^refcount_bits - 1}: the
 *       increment that would is refused, and the caller reports "ERROR: overflow cluster", as QEMU's
 *       {@code qcow2_inc_refcounts_imrt} does.</li>
 * </ul>
 *
 * <p>Not thread-safe: one check owns it.
 */
final class InMemoryRefcounts {
    /** Counters per page: 128 KiB of chars, small enough to allocate lazily for sparse references. */
    static final int PAGE_BITS = 16;
    static final int PAGE_ENTRIES = 1 << PAGE_BITS;
    private static final char SPILLED = 0xffff;

    private final long capacity;
    private final long refcountMax;
    private final char[][] pages;
    /** Counters >= 0xffff, by cluster index (the page holds SPILLED for them). */
    private final Map<Long, Long> overflow = new HashMap<>();
    /** Clusters [0, size) are compared with the on-disk refcounts; grows like QEMU's array. */
    private long size;

    /**
     * @param nbClusters  clusters of the file (rounded up); the initial logical size
     * @param refcountBits width of an on-disk refcount, 1..64
     */
    InMemoryRefcounts(long nbClusters, int refcountBits) {
        if (nbClusters < 0 || nbClusters > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("nbClusters: " + nbClusters
                    + " (expected: 0.." + Integer.MAX_VALUE + ")");
        }
        this.capacity = nbClusters + 1;
        this.size = nbClusters;
        this.refcountMax = refcountBits == 64 ? -1L : (1L << refcountBits) - 1;
        this.pages = new char[(int) ((capacity + PAGE_ENTRIES - 1) >>> PAGE_BITS)][];
    }

    /** Number of clusters the comparison covers. */
    long size() {
        return size;
    }

    /** Largest refcount the image can store (unsigned; -1 means 2^64 - 1). */
    long refcountMax() {
        return refcountMax;
    }

    /**
     * Adds one reference to {@code cluster}.
     *
     * <p>On entry: {@code 0 <= cluster <= nbClusters} (the caller rejected ranges past EOF).
     * On exit: true if counted; false if the counter already holds the maximum refcount (nothing
     * changed; the caller reports the overflow).
     */
    boolean increment(long cluster) {
        if (cluster < 0 || cluster >= capacity) {
            throw new IllegalStateException("cluster: " + cluster + " (expected: 0.." + (capacity - 1) + ")");
        }
        long current = get(cluster);
        if (current == refcountMax) {
            return false;
        }
        if (cluster >= size) {
            size = cluster + 1;
        }
        int p = (int) (cluster >>> PAGE_BITS);
        int i = (int) (cluster & (PAGE_ENTRIES - 1));
        char[] page = pages[p];
        if (page == null) {
            page = new char[PAGE_ENTRIES];
            pages[p] = page;
        }
        long next = current + 1;
        if (next >= SPILLED) {
            page[i] = SPILLED;
            overflow.put(cluster, next);
        } else {
            page[i] = (char) next;
        }
        return true;
    }

    /** The computed count of {@code cluster} (0 outside the array). */
    long get(long cluster) {
        if (cluster < 0 || cluster >= capacity) {
            return 0;
        }
        char[] page = pages[(int) (cluster >>> PAGE_BITS)];
        if (page == null) {
            return 0;
        }
        char c = page[(int) (cluster & (PAGE_ENTRIES - 1))];
        return c == SPILLED ? overflow.get(cluster) : c;
    }
}
