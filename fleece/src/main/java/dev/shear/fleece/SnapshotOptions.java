package dev.shear.fleece;

import java.util.Objects;

/**
 * How a snapshot is taken: which clusters it covers, what a failed copy does, and the limits.
 *
 * @param selection the clusters the snapshot exposes and protects: all of them (full backup) or those
 *                  dirty in the backup's bitmap (incremental); read once at the snapshot point
 * @param policy    what a failed or late copy does
 * @param limits    copy timeout and granularity floor
 */
public record SnapshotOptions(CopySelection selection, CbwPolicy policy, CbwLimits limits) {

    public SnapshotOptions {
        Objects.requireNonNull(selection, "selection");
        Objects.requireNonNull(policy, "policy");
        Objects.requireNonNull(limits, "limits");
    }

    /** A full snapshot, {@link CbwPolicy#BREAK_SNAPSHOT}, default limits. */
    public static SnapshotOptions full() {
        return new SnapshotOptions(CopySelection.all(), CbwPolicy.BREAK_SNAPSHOT, CbwLimits.DEFAULT);
    }

    /** An incremental snapshot of {@code selection}, {@link CbwPolicy#BREAK_SNAPSHOT}, default limits. */
    public static SnapshotOptions incremental(CopySelection selection) {
        return new SnapshotOptions(selection, CbwPolicy.BREAK_SNAPSHOT, CbwLimits.DEFAULT);
    }

    public SnapshotOptions withPolicy(CbwPolicy p) {
        return new SnapshotOptions(selection, p, limits);
    }

    public SnapshotOptions withLimits(CbwLimits l) {
        return new SnapshotOptions(selection, policy, l);
    }
}
