package dev.shear.fleece.job;

import java.time.Instant;

/**
 * Something a backup job did, for {@code /events} (one JSON object per line).
 *
 * @param jobId    the job
 * @param export   the live export the job backs up
 * @param type     "started", "read-complete", "completed", "ended", "aborted", "failed"
 * @param state    the job's state after the event
 * @param time     when
 * @param progress the progress at that time
 * @param message  detail (the failure), or null
 */
public record JobEvent(String jobId, String export, String type, JobState state, Instant time, JobProgress progress,
        String message) {
}
