package dev.shear.fleece.job;

import java.io.IOException;

/** A backup was begun on a disk that another backup job holds (one backup per export at a time). */
public final class BackupBusyException extends IOException {
    private static final long serialVersionUID = 1L;

    private final String jobId;

    public BackupBusyException(String export, String jobId) {
        super("backup: export '" + export + "' is busy with job " + jobId + " (expected: one backup at a time)");
        this.jobId = jobId;
    }

    /** The job that holds the export. */
    public String jobId() {
        return jobId;
    }
}
