package dev.shear.fleece.job;

import dev.shear.bitmap.DirtyBitmap;
import dev.shear.bitmap.DirtyTracker;
import dev.shear.block.BlockDevice;
import dev.shear.fleece.CopyBeforeWrite;
import java.io.IOException;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicReference;

/**
 * One live disk that backups can run on: the stack {@code CopyBeforeWrite → DirtyTracker → image}
 * and its checkpoints. The export serves {@link #top()}.
 *
 * <p>Why the tracker sits below copy-before-write (design.md draws it above): a write marks the
 * bitmaps inside the copy-before-write gate, so when a snapshot starts (gate exclusive) no write has
 * marked a bitmap without having reached the image, and none is half-way. A checkpoint created at the
 * snapshot point therefore records exactly the writes the snapshot does not contain; with the tracker
 * above, a write could mark the old bitmaps, wait at the gate, land after the snapshot point and be
 * missing from the new checkpoint's bitmap.
 *
 * <p>At most one backup job holds the disk at a time ({@link #claim}).
 */
public final class ManagedDisk {
    private final String name;
    private final DirtyTracker tracker;
    private final CopyBeforeWrite cbw;
    private final CheckpointProvider checkpoints;
    /** The job that holds the disk, or null. */
    private final AtomicReference<BackupJob> owner = new AtomicReference<>();

    private ManagedDisk(String name, DirtyTracker tracker, CopyBeforeWrite cbw, CheckpointProvider checkpoints) {
        this.name = name;
        this.tracker = tracker;
        this.cbw = cbw;
        this.checkpoints = checkpoints;
    }

    /**
     * Wraps {@code image} (owned from now on: closing {@link #top()} closes it) with the bitmaps to
     * record into and an in-memory checkpoint provider of {@code granularity}.
     */
    public static ManagedDisk wrap(String name, BlockDevice image, List<DirtyBitmap> bitmaps, long granularity) {
        DirtyTracker t = new DirtyTracker(image, bitmaps);
        CopyBeforeWrite c = new CopyBeforeWrite(t);
        return new ManagedDisk(name, t, c, new BitmapCheckpoints(t, granularity));
    }

    /** The same stack with another checkpoint provider (the persistent chain). */
    public ManagedDisk withCheckpoints(CheckpointProvider provider) {
        return new ManagedDisk(name, tracker, cbw, Objects.requireNonNull(provider, "provider"));
    }

    public String name() {
        return name;
    }

    /** What the live export serves. */
    public BlockDevice top() {
        return cbw;
    }

    public CopyBeforeWrite cbw() {
        return cbw;
    }

    public DirtyTracker tracker() {
        return tracker;
    }

    public CheckpointProvider checkpoints() {
        return checkpoints;
    }

    /** The job holding the disk, or null. */
    public BackupJob owner() {
        return owner.get();
    }

    /** Takes the disk for {@code job}; false when another job holds it. */
    boolean claim(BackupJob job) {
        return owner.compareAndSet(null, job);
    }

    void release(BackupJob job) {
        owner.compareAndSet(job, null);
    }

    /** Closes the stack (and the image). */
    public void close() throws IOException {
        cbw.close();
    }
}
