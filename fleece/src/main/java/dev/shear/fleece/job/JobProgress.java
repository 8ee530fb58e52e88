package dev.shear.fleece.job;

/**
 * Progress of a backup job: bytes of the backup's extents done (pull: read by the client from the
 * snapshot export, or reported to it as zeros by block status; push: written to the target) out of the
 * total.
 *
 * @param doneBytes      bytes done
 * @param totalBytes     bytes the backup covers (the disk for a full backup, the dirty extents otherwise)
 * @param bytesPerSecond average rate since the job began
 * @param etaSeconds     estimated seconds left, or -1 when unknown
 */
public record JobProgress(long doneBytes, long totalBytes, double bytesPerSecond, long etaSeconds) {

    /** Progress computed from counts and the time elapsed. */
    public static JobProgress of(long done, long total, long elapsedNanos) {
        double seconds = elapsedNanos / 1e9;
        double rate = seconds > 0 ? done / seconds : 0;
        long eta = done >= total ? 0 : rate > 0 ? (long) Math.ceil((total - done) / rate) : -1;
        return new JobProgress(done, total, rate, eta);
    }

    /** Done as a fraction in [0, 1]. */
    public double fraction() {
        return totalBytes == 0 ? 1 : Math.min(1, (double) doneBytes / totalBytes);
    }
}
