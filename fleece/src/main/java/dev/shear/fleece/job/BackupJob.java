package dev.shear.fleece.job;

import dev.shear.bitmap.DirtyBitmap;
import dev.shear.block.BlockException;
import dev.shear.fleece.CbwPolicy;
import dev.shear.fleece.CopySelection;
import dev.shear.fleece.SnapshotOptions;
import dev.shear.fleece.SnapshotStats;
import dev.shear.fleece.SnapshotView;
import dev.shear.fleece.scratch.ScratchTarget;
import java.io.IOException;
import java.time.Instant;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;
import org.roaringbitmap.RoaringBitmap;

/**
 * A backup of one {@link ManagedDisk}: a snapshot taken at one instant (optionally incremental since a
 * checkpoint, optionally creating the next checkpoint at that same instant), then either exported for
 * a client to pull ({@link PullBackupJob}) or written by Shear to a qcow2 target ({@link PushBackupJob}).
 *
 * <p>Lifecycle: {@link JobState#RUNNING} while the snapshot lives; a final state once it is released.
 * The disk is claimed for the job's whole RUNNING life: one backup per disk at a time. State changes
 * are published as {@link JobEvent}s to the listeners, in order, on the thread that made them.
 */
public abstract sealed class BackupJob permits PullBackupJob, PushBackupJob {
    /** The snapshot a job begins with. */
    record Snapshot(SnapshotView view, DirtyBitmap bitmap) {
    }

    private final String id;
    private final ManagedDisk disk;
    private final String sinceCheckpoint;
    private final String newCheckpoint;
    private final Instant created = Instant.now();
    protected final long startNanos = System.nanoTime();
    private final List<Consumer<JobEvent>> listeners = new CopyOnWriteArrayList<>();
    /** Guarded by this. */
    private JobState state = JobState.RUNNING;
    /** Why the job failed, or null; guarded by this. */
    private String error;
    /** Progress frozen at the final state, or null while running; guarded by this. */
    private JobProgress finalProgress;

    BackupJob(String id, ManagedDisk disk, String sinceCheckpoint, String newCheckpoint) {
        this.id = Objects.requireNonNull(id, "id");
        this.disk = Objects.requireNonNull(disk, "disk");
        this.sinceCheckpoint = sinceCheckpoint;
        this.newCheckpoint = newCheckpoint;
    }

    /**
     * Claims {@code disk} for {@code job} and takes the snapshot; on failure releases the claim.
     *
     * @param frozenName the name of the exposed frozen bitmap
     */
    static Snapshot begin(BackupJob job, ScratchSpec scratchSpec, CbwPolicy policy, String frozenName)
            throws IOException {
        ManagedDisk disk = job.disk;
        if (!disk.claim(job)) {
            BackupJob other = disk.owner();
            throw new BackupBusyException(disk.name(), other == null ? "?" : other.id());
        }
        boolean ok = false;
        try {
            CheckpointProvider cps = disk.checkpoints();
            if (job.newCheckpoint != null && cps.find(job.newCheckpoint) != null) {
                throw BlockException.invalid(disk.name(), -1, "checkpoint '%s': already exists (expected: a new name)",
                        job.newCheckpoint);
            }
            SnapshotOptions options;
            RoaringBitmap pre = null;
            if (job.sinceCheckpoint != null) {
                DirtyBitmap before = cps.changesSince(job.sinceCheckpoint, frozenName);
                pre = granules(before);
                options = SnapshotOptions.incremental(CopySelection.dirty(pre, before.granularity()));
            } else {
                options = SnapshotOptions.full();
            }
            options = options.withPolicy(policy);
            int clusterSize = dev.shear.fleece.CopyBeforeWrite.copyGranularity(disk.tracker(), options.limits());
            ScratchTarget scratch = scratchSpec.create(disk.tracker().size(), clusterSize);
            DirtyBitmap[] frozen = new DirtyBitmap[1];
            IOException[] failure = new IOException[1];
            RoaringBitmap preGranules = pre;
            SnapshotView view = disk.cbw().startSnapshotCovering(options, scratch, () -> {
                try {
                    CopySelection extra = null;
                    if (job.sinceCheckpoint != null) {
                        frozen[0] = cps.changesSince(job.sinceCheckpoint, frozenName);
                        RoaringBitmap delta = granules(frozen[0]);
                        delta.andNot(preGranules);
                        extra = CopySelection.dirty(delta, frozen[0].granularity());
                    }
                    if (job.newCheckpoint != null) {
                        cps.create(job.newCheckpoint, "backup " + job.id);
                    }
                    return extra;
                } catch (IOException e) {
                    failure[0] = e;
                    return null;
                }
            });
            if (failure[0] != null) {
                view.close();
                throw failure[0];
            }
            ok = true;
            return new Snapshot(view, frozen[0]);
        } finally {
            if (!ok) {
                disk.release(job);
            }
        }
    }

    /** The granule indexes of the dirty bits of {@code b}. */
    static RoaringBitmap granules(DirtyBitmap b) {
        RoaringBitmap r = new RoaringBitmap();
        int bits = b.granularityBits();
        b.forEachDirty(0, b.sizeBytes(), (off, len, dirty) -> {
            if (dirty) {
                r.add(off >>> bits, (off + len + (1L << bits) - 1) >>> bits);
            }
            return true;
        });
        return r;
    }

    public String id() {
        return id;
    }

    /** "pull" or "push". */
    public abstract String kind();

    public ManagedDisk disk() {
        return disk;
    }

    /** The live export's name. */
    public String export() {
        return disk.name();
    }

    public String sinceCheckpoint() {
        return sinceCheckpoint;
    }

    public String newCheckpoint() {
        return newCheckpoint;
    }

    public Instant created() {
        return created;
    }

    public synchronized JobState state() {
        return state;
    }

    public synchronized String error() {
        return error;
    }

    /** The snapshot's counters (cbw copies, scratch use), or null once released. */
    public abstract SnapshotStats snapshotStats();

    /** Progress now (frozen once final). */
    public final JobProgress progress() {
        synchronized (this) {
            if (finalProgress != null) {
                return finalProgress;
            }
        }
        return JobProgress.of(doneBytes(), totalBytes(), System.nanoTime() - startNanos);
    }

    abstract long doneBytes();

    abstract long totalBytes();

    /**
     * Ends the job: a pull job's client is done (ENDED), a running push job is aborted (ABORTED); the
     * snapshot and scratch are released. A job already final is left as it is.
     */
    public abstract void end() throws IOException;

    public void addListener(Consumer<JobEvent> listener) {
        listeners.add(listener);
    }

    public void removeListener(Consumer<JobEvent> listener) {
        listeners.remove(listener);
    }

    /** Publishes an event without changing state. */
    protected void publish(String type, String message) {
        JobEvent e = new JobEvent(id, export(), type, state(), Instant.now(), progress(), message);
        for (Consumer<JobEvent> l : listeners) {
            try {
                l.accept(e);
            } catch (RuntimeException ex) {
                // A listener's failure must not stop the job.
            }
        }
    }

    /**
     * Moves to final state {@code to} (once: false when already final), releases the disk claim and
     * publishes the event.
     */
    protected boolean finish(JobState to, String type, String message) {
        JobProgress p = JobProgress.of(doneBytes(), totalBytes(), System.nanoTime() - startNanos);
        synchronized (this) {
            if (state.isFinal()) {
                return false;
            }
            state = to;
            if (to == JobState.FAILED) {
                error = message;
            }
            finalProgress = p;
        }
        disk.release(this);
        publish(type, message);
        return true;
    }
}
