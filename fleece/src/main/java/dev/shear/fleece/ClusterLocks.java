package dev.shear.fleece;

import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Shared/exclusive locks per cluster, striped: cluster {@code c} is guarded by stripe
 * {@code c mod stripes} (a power of two). Writers to different stripes proceed in parallel; a
 * snapshot reader shares its stripes with other readers. See {@link CopyBeforeWrite} for the protocol.
 *
 * <p>Lock order: a range of clusters is always locked in <em>ascending stripe index</em>, each stripe
 * once. For a range that does not wrap around the stripe table this is ascending cluster order; a
 * wrapping range locks its low stripes (the end of the range) first; a range of at least
 * {@code stripes} clusters locks every stripe. One global order over stripes, shared and exclusive
 * alike, means no two ranges can wait on each other in a cycle. (Ascending <em>cluster</em> order alone
 * is not enough once two clusters share a stripe: [1023, 1024] and [0, 1023] would deadlock with 1024
 * stripes.) Unlocking order does not matter.
 *
 * <p>Locks are not upgradable: a thread holding a stripe shared must not ask for it exclusively.
 */
final class ClusterLocks {
    /** Default stripe count: more than the 512 clusters of one 32 MiB request at 64 KiB, few enough to be cheap. */
    static final int DEFAULT_STRIPES = 1024;

    private final ReentrantReadWriteLock[] stripes;
    private final int mask;

    ClusterLocks(int stripeCount) {
        if (Integer.bitCount(stripeCount) != 1) {
            throw new IllegalArgumentException("stripes: " + stripeCount + " (expected: a power of two)");
        }
        this.stripes = new ReentrantReadWriteLock[stripeCount];
        for (int i = 0; i < stripeCount; i++) {
            stripes[i] = new ReentrantReadWriteLock();
        }
        this.mask = stripeCount - 1;
    }

    int stripeCount() {
        return stripes.length;
    }

    /** Locks clusters [first, last] exclusively, in the global stripe order. */
    void lockExclusive(long first, long last) {
        int[] r = ranges(first, last);
        for (int k = 0; k < r.length; k += 2) {
            for (int s = r[k]; s <= r[k + 1]; s++) {
                stripes[s].writeLock().lock();
            }
        }
    }

    void unlockExclusive(long first, long last) {
        int[] r = ranges(first, last);
        for (int k = 0; k < r.length; k += 2) {
            for (int s = r[k]; s <= r[k + 1]; s++) {
                stripes[s].writeLock().unlock();
            }
        }
    }

    /** Locks clusters [first, last] shared, in the global stripe order. */
    void lockShared(long first, long last) {
        int[] r = ranges(first, last);
        for (int k = 0; k < r.length; k += 2) {
            for (int s = r[k]; s <= r[k + 1]; s++) {
                stripes[s].readLock().lock();
            }
        }
    }

    void unlockShared(long first, long last) {
        int[] r = ranges(first, last);
        for (int k = 0; k < r.length; k += 2) {
            for (int s = r[k]; s <= r[k + 1]; s++) {
                stripes[s].readLock().unlock();
            }
        }
    }

    /** True when the current thread holds cluster {@code c}'s stripe exclusively (assertions, tests). */
    boolean isHeldExclusively(long cluster) {
        return stripes[(int) (cluster & mask)].isWriteLockedByCurrentThread();
    }

    /** The stripes of [first, last] as ascending, disjoint inclusive ranges {lo0, hi0[, lo1, hi1]}. */
    private int[] ranges(long first, long last) {
        if (first < 0 || last < first) {
            throw new IllegalArgumentException("cluster range: [" + first + ", " + last + "]");
        }
        if (last - first >= mask) {
            return new int[] {0, mask};
        }
        int lo = (int) (first & mask);
        int hi = (int) (last & mask);
        if (lo <= hi) {
            return new int[] {lo, hi};
        }
        return new int[] {0, hi, lo, mask};   // wraps: low stripes first
    }
}
