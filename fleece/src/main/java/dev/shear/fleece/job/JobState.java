package dev.shear.fleece.job;

/** The life of a backup job. RUNNING is the only state that holds a snapshot. */
public enum JobState {
    /** The snapshot is live: a pull job waits for its client, a push job copies. */
    RUNNING,
    /** A push job wrote the whole backup; the snapshot is released. */
    COMPLETED,
    /** A pull job was ended by its client; the snapshot is released. */
    ENDED,
    /** The job was aborted; the snapshot is released (a push job's partial target is deleted). */
    ABORTED,
    /** The job failed (broken snapshot, I/O error); the snapshot is released or unusable. */
    FAILED;

    /** True once the job can no longer change. */
    public boolean isFinal() {
        return this != RUNNING;
    }
}
