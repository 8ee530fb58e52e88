package dev.shear.fleece;

import java.util.BitSet;
import java.util.Objects;
import java.util.function.LongPredicate;
import org.roaringbitmap.PeekableIntIterator;
import org.roaringbitmap.RoaringBitmap;

/**
 * Which clusters a snapshot covers: every cluster (full backup) or the clusters touched by the dirty
 * granules of the backup's bitmap (incremental; dirty-bitmaps.md §8.2, QEMU cbw {@code bitmap}).
 *
 * <p>The selection is read once, when the snapshot starts, and expanded into the snapshot's
 * {@link CopyState}; later changes to the bitmap do not affect the snapshot (as QEMU). Bitmap
 * granularity and copy granularity are independent: a cluster is selected when any of its bytes lies
 * in a dirty granule, so the selection is always a superset of the dirty bytes.
 *
 * <p>Clusters outside the selection are neither copied nor readable through the view (reads fail
 * with INVALID_ARGUMENT, as QEMU refuses them): their live contents may already be newer than the
 * snapshot point.
 */
public sealed interface CopySelection {

    /** Every cluster: a full backup. */
    static CopySelection all() {
        return All.INSTANCE;
    }

    /**
     * The clusters overlapping the set granules of {@code granules}, granule {@code i} covering guest
     * bytes [i × granularity, (i + 1) × granularity). Indexes are unsigned 32-bit values, as in
     * {@link RoaringBitmap} (a 2 TiB disk at 512-byte granularity still fits).
     */
    static CopySelection dirty(RoaringBitmap granules, long granularityBytes) {
        return new DirtyRoaring(granules.clone(), checkGranularity(granularityBytes));
    }

    /** The clusters overlapping the set bits of {@code granules}; see {@link #dirty(RoaringBitmap, long)}. */
    static CopySelection dirty(BitSet granules, long granularityBytes) {
        return new DirtyBitSet((BitSet) granules.clone(), checkGranularity(granularityBytes));
    }

    /** The clusters for which {@code selected} answers true; called once per cluster at snapshot start. */
    static CopySelection clusters(LongPredicate selected) {
        return new ClusterPredicate(Objects.requireNonNull(selected, "selected"));
    }

    private static long checkGranularity(long granularityBytes) {
        if (granularityBytes <= 0) {
            throw new IllegalArgumentException("granularity: " + granularityBytes + " (expected: > 0)");
        }
        return granularityBytes;
    }

    /** Marks the selected clusters of {@code state} as needed; on entry every cluster is NOT_COVERED. */
    void select(CopyState state, int clusterBits, long deviceSize);

    /** Every cluster. */
    final class All implements CopySelection {
        static final All INSTANCE = new All();

        private All() {
        }

        @Override
        public void select(CopyState state, int clusterBits, long deviceSize) {
            // CopyState.full() is built instead; this path is only for completeness.
            for (long c = 0; c < state.clusterCount(); c++) {
                state.set(c, CopyState.NEEDED);
            }
        }
    }

    /** Dirty granules in a RoaringBitmap. */
    record DirtyRoaring(RoaringBitmap granules, long granularity) implements CopySelection {
        @Override
        public void select(CopyState state, int clusterBits, long deviceSize) {
            PeekableIntIterator it = granules.getIntIterator();
            while (it.hasNext()) {
                long granule = Integer.toUnsignedLong(it.next());
                long next = markGranule(state, clusterBits, deviceSize, granule, granularity);
                if (next < 0 || next > 0xffff_ffffL) {
                    return;
                }
                // Granules smaller than a cluster: skip the rest of the cluster just marked.
                it.advanceIfNeeded((int) next);
            }
        }
    }

    /** Dirty granules in a BitSet. */
    record DirtyBitSet(BitSet granules, long granularity) implements CopySelection {
        @Override
        public void select(CopyState state, int clusterBits, long deviceSize) {
            int i = granules.nextSetBit(0);
            while (i >= 0) {
                long next = markGranule(state, clusterBits, deviceSize, i, granularity);
                if (next < 0 || next > Integer.MAX_VALUE) {
                    return;
                }
                i = granules.nextSetBit((int) next);
            }
        }
    }

    /** A per-cluster predicate. */
    record ClusterPredicate(LongPredicate selected) implements CopySelection {
        @Override
        public void select(CopyState state, int clusterBits, long deviceSize) {
            for (long c = 0; c < state.clusterCount(); c++) {
                if (selected.test(c)) {
                    state.set(c, CopyState.NEEDED);
                }
            }
        }
    }

    /**
     * Marks the clusters of one dirty granule. Returns the first granule that can select a cluster not
     * yet marked (the granule after the last marked cluster), or -1 when the granule lies past the end.
     */
    private static long markGranule(CopyState state, int clusterBits, long deviceSize, long granule,
            long granularity) {
        long start = granule * granularity;
        if (granule != 0 && start / granule != granularity || start >= deviceSize) {
            return -1;   // overflow or past the device's end: nothing further can be selected
        }
        long end = Math.min(deviceSize, start + granularity);
        long first = start >>> clusterBits;
        long last = (end - 1) >>> clusterBits;
        for (long c = first; c <= last; c++) {
            state.set(c, CopyState.NEEDED);
        }
        long nextByte = (last + 1) << clusterBits;
        return Math.max(granule + 1, nextByte / granularity);
    }
}
