package dev.shear.fleece;

import java.util.concurrent.atomic.AtomicLongArray;

/**
 * The state of every cluster of one snapshot: four bits per cluster, sixteen to a word of an
 * {@link AtomicLongArray} (a 2 TiB disk at 64 KiB clusters costs 16 MiB).
 *
 * <pre>
 *                     first write (live had data)          client discard
 *   NEEDED ───────────────────────────────────────▶ COPIED ───────────────▶ RELEASED
 *     │  first write (live said zero/hole)          ZERO   ───────────────▶ RELEASED
 *     │  client discard                                                     RELEASED
 *     └─ first write after the snapshot broke ─────▶ ABANDONED ──discard──▶ RELEASED
 *   NOT_COVERED (outside an incremental selection): never changes
 * </pre>
 *
 * <p>Invariants: a cluster never returns to NEEDED; every transition out of NEEDED, and every change
 * of a cluster that the view may be reading, is made under that cluster's exclusive lock
 * ({@link ClusterLocks}). Word updates are compare-and-set loops, so that clusters sharing a word but
 * guarded by different lock stripes never lose each other's updates; reads are volatile, so a
 * lock-free reader that sees a state other than NEEDED may rely on it (it is final for the writer's
 * purposes) and sees everything that happened before the transition (the scratch put).
 */
final class CopyState {
    /** The snapshot needs the cluster and its contents are still those of the live device. */
    static final int NEEDED = 0;
    /** The old contents are in the scratch target. */
    static final int COPIED = 1;
    /** The live device said zero/hole when the cluster was first written: the snapshot reads zeros. */
    static final int ZERO = 2;
    /** The snapshot client discarded it: reads return zeros, writes no longer copy. */
    static final int RELEASED = 3;
    /** Outside an incremental snapshot's selection: not copied, not readable. */
    static final int NOT_COVERED = 4;
    /** Written without a copy after the snapshot broke: the snapshot can no longer read it. */
    static final int ABANDONED = 5;

    private static final int BITS = 4;
    private static final int PER_WORD = Long.SIZE / BITS;
    private static final long MASK = (1L << BITS) - 1;
    private static final long ALL_NOT_COVERED = 0x4444_4444_4444_4444L;

    private final long clusterCount;
    private final AtomicLongArray words;

    private CopyState(long clusterCount, long fill) {
        if (clusterCount < 0 || (clusterCount + PER_WORD - 1) / PER_WORD > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("clusterCount: " + clusterCount + " (expected: 0.."
                    + (long) Integer.MAX_VALUE * PER_WORD + ")");
        }
        this.clusterCount = clusterCount;
        this.words = new AtomicLongArray((int) ((clusterCount + PER_WORD - 1) / PER_WORD));
        if (fill != 0) {
            for (int i = 0; i < words.length(); i++) {
                words.set(i, fill);
            }
        }
    }

    /** Every cluster NEEDED (a full snapshot). */
    static CopyState full(long clusterCount) {
        return new CopyState(clusterCount, 0);
    }

    /** Every cluster NOT_COVERED, to be selected by {@link CopySelection#select}. */
    static CopyState none(long clusterCount) {
        return new CopyState(clusterCount, ALL_NOT_COVERED);
    }

    long clusterCount() {
        return clusterCount;
    }

    int get(long cluster) {
        long w = words.get(wordIndex(cluster));
        return (int) ((w >>> shift(cluster)) & MASK);
    }

    void set(long cluster, int state) {
        int i = wordIndex(cluster);
        int shift = shift(cluster);
        long w;
        long updated;
        do {
            w = words.get(i);
            updated = (w & ~(MASK << shift)) | ((long) state << shift);
        } while (!words.compareAndSet(i, w, updated));
    }

    /** True when some cluster in [first, last] is in {@code state}; lock-free, a hint unless the state is final. */
    boolean any(long first, long last, int state) {
        for (long c = first; c <= last; c++) {
            if (get(c) == state) {
                return true;
            }
        }
        return false;
    }

    /** The first cluster in [from, to) whose state is not {@code state}, or {@code to}. */
    long runEnd(long from, long to, int state) {
        long c = from;
        while (c < to && get(c) == state) {
            c++;
        }
        return c;
    }

    /** Number of clusters in {@code state}; a scan, for tests and statistics at snapshot start. */
    long count(int state) {
        long n = 0;
        for (long c = 0; c < clusterCount; c++) {
            if (get(c) == state) {
                n++;
            }
        }
        return n;
    }

    static String name(int state) {
        return switch (state) {
            case NEEDED -> "needed";
            case COPIED -> "copied";
            case ZERO -> "zero";
            case RELEASED -> "released";
            case NOT_COVERED -> "not-covered";
            case ABANDONED -> "abandoned";
            default -> "state-" + state;
        };
    }

    private int wordIndex(long cluster) {
        if (cluster < 0 || cluster >= clusterCount) {
            throw new IndexOutOfBoundsException("cluster: " + cluster + " (expected: 0.." + (clusterCount - 1) + ")");
        }
        return (int) (cluster / PER_WORD);
    }

    private static int shift(long cluster) {
        return (int) (cluster % PER_WORD) * BITS;
    }
}
