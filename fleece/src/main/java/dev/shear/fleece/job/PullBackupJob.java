package dev.shear.fleece.job;

import dev.shear.bitmap.DirtyBitmap;
import dev.shear.block.BlockDevice;
import dev.shear.fleece.CbwPolicy;
import dev.shear.fleece.SnapshotStats;
import dev.shear.fleece.SnapshotView;
import java.io.IOException;

/**
 * A pull backup (design.md §Control API; dirty-bitmaps.md §8): the snapshot is served read-only as
 * export {@code EXPORT-backup}; for an incremental backup the bitmap frozen at the snapshot point is
 * exposed on it as {@code qemu:dirty-bitmap:backup-EXPORT}, its only bitmap. {@link #end()} releases the
 * snapshot and deletes the scratch; a checkpoint created with the backup stays.
 *
 * <p>Progress: the total is the bytes of the backup's extents (the disk for a full backup, the frozen
 * bitmap's dirty extents for an incremental one); a byte is done once the client has read it through
 * {@link #exportDevice()} <em>or</em> a block-status reply has told the client it reads as zeros (a
 * hole or zero extent of base:allocation). Clients such as nbdcopy and qemu-img convert skip such
 * extents instead of reading them, so counting only reads would never reach the total; counting them
 * when reported (not when the job starts) also covers a cluster that turns zero later, for instance a
 * copy the scratch stores as zeros. A client that never asks block status reads everything and gets
 * there by reads. A "read-complete" event is published once every byte is done. Counting is per
 * 512-byte unit in a Roaring bitmap ({@link ReadProgress}), bounded by the number of runs, not bytes.
 *
 * <p>The server side (adding and removing the export) is the caller's: this class knows no network.
 */
public final class PullBackupJob extends BackupJob {
    // Set once by begin() before the job is published; never changed after.
    private SnapshotView view;
    private DirtyBitmap bitmap;
    private ReadProgress reads;
    private SnapshotExportDevice exportDevice;
    /** The stats at release, so status stays answerable after the end. */
    private volatile SnapshotStats lastStats;

    private PullBackupJob(String id, ManagedDisk disk, String since, String newCheckpoint) {
        super(id, disk, since, newCheckpoint);
    }

    private void attach(Snapshot snapshot) {
        this.view = snapshot.view();
        this.bitmap = snapshot.bitmap();
        this.reads = bitmap == null ? ReadProgress.full(view.size()) : ReadProgress.dirty(bitmap);
        this.exportDevice = new SnapshotExportDevice(view, this::onRead);
    }

    /**
     * Takes the snapshot and returns the running job.
     *
     * @param since         checkpoint to start from (incremental), or null for a full backup
     * @param newCheckpoint checkpoint to create at the snapshot point, or null
     * @throws BackupBusyException when another job holds the disk
     */
    public static PullBackupJob begin(String id, ManagedDisk disk, String since, String newCheckpoint,
            ScratchSpec scratch, CbwPolicy policy) throws IOException {
        PullBackupJob job = new PullBackupJob(id, disk, since, newCheckpoint);
        Snapshot s = BackupJob.begin(job, scratch, policy, bitmapName(disk.name()));
        job.attach(s);
        job.publish("started", null);
        return job;
    }

    /** {@code EXPORT-backup}. */
    public static String exportName(String export) {
        return export + "-backup";
    }

    /** {@code backup-EXPORT}. */
    public static String bitmapName(String export) {
        return "backup-" + export;
    }

    @Override
    public String kind() {
        return "pull";
    }

    /** What the snapshot export serves (reads are counted; TRIM releases clusters). */
    public BlockDevice exportDevice() {
        return exportDevice;
    }

    public String snapshotExport() {
        return exportName(export());
    }

    /** The frozen bitmap exposed on the snapshot export, or null for a full backup. */
    public DirtyBitmap bitmap() {
        return bitmap;
    }

    public SnapshotView view() {
        return view;
    }

    private void onRead(long offset, long length) {
        if (reads.record(offset, length) && !state().isFinal()) {
            publish("read-complete", null);
        }
    }

    @Override
    long doneBytes() {
        return reads.doneBytes();
    }

    @Override
    long totalBytes() {
        return reads.totalBytes();
    }

    @Override
    public SnapshotStats snapshotStats() {
        SnapshotStats last = lastStats;
        return last != null ? last : view.stats();
    }

    @Override
    public void end() throws IOException {
        release(JobState.ENDED, "ended", null);
    }

    /** Ends the job as failed (the snapshot broke, the server stops). */
    public void fail(String reason) throws IOException {
        release(JobState.FAILED, "failed", reason);
    }

    private void release(JobState to, String type, String message) throws IOException {
        synchronized (this) {
            if (state().isFinal()) {
                return;
            }
            lastStats = view.stats();
        }
        String why = message;
        if (why == null && view.isBroken()) {
            to = JobState.FAILED;
            type = "failed";
            why = "snapshot broken: " + view.brokenReason();
        }
        try {
            view.close();
        } finally {
            finish(to, type, why);
        }
    }
}
