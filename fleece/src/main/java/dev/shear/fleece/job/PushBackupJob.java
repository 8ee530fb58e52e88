package dev.shear.fleece.job;

import dev.shear.bitmap.DirtyBitmap;
import dev.shear.block.BlockDevice;
import dev.shear.block.BlockException;
import dev.shear.block.Extent;
import dev.shear.block.ImageFormat;
import dev.shear.fleece.CbwPolicy;
import dev.shear.fleece.SnapshotStats;
import dev.shear.fleece.SnapshotView;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2CreateOptions;
import dev.shear.qcow2.Qcow2Creator;
import dev.shear.qcow2.Qcow2Image;
import dev.shear.qcow2.compress.CompressionType;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A push backup (design.md §Control API): Shear reads the snapshot and writes a new qcow2 image.
 *
 * <ul>
 *   <li>Full: every extent the snapshot reports as data is copied; zero and hole extents are left
 *       unallocated (they read as zeros), or written as zero clusters when the target has a backing
 *       file (they must hide the backing data).</li>
 *   <li>Incremental (since a checkpoint): only the clusters dirty in the bitmap frozen at the snapshot
 *       point, widened to the copy granularity; zero ranges among them become zero clusters. The
 *       target's backing file should name the previous backup, so the chain reads as the disk did.</li>
 * </ul>
 * Each range written is then discarded on the snapshot: its copy in the scratch is freed and later
 * guest writes there are no longer copied. Progress is bytes processed of the backup's extents, with
 * rate and ETA. {@link #end()} aborts a running job and deletes the partial target; a completed target
 * passes {@code qemu-img check} and equals the snapshot per {@code qemu-img compare}.
 *
 * <p>Compressed ({@code compression} not null): the target is created with that {@code compression_type}
 * and every cluster the backup writes is a compressed cluster (a normal one where compression gains
 * nothing, as QEMU), all-zero clusters are zero clusters; see {@link CompressedCopy} for whole clusters,
 * the disk's last partial cluster and incremental targets over a backing file.
 */
public final class PushBackupJob extends BackupJob {
    /** Bytes copied per read/write: bounds memory and how long a guest write waits behind us. */
    static final int CHUNK_BYTES = 1 << 20;

    private final Path target;
    private final String backingFile;
    /** The target's compression type, or null for uncompressed clusters. */
    private final CompressionType compression;
    private final AtomicLong done = new AtomicLong();
    private final CountDownLatch finished = new CountDownLatch(1);
    /** Set by end(); read by the copy loop. */
    private volatile boolean abortRequested;
    // Set once by begin() before the job is published.
    private SnapshotView view;
    private DirtyBitmap bitmap;
    private long total;
    private volatile SnapshotStats lastStats;

    private PushBackupJob(String id, ManagedDisk disk, String since, String newCheckpoint, Path target,
            String backingFile, CompressionType compression) {
        super(id, disk, since, newCheckpoint);
        this.target = target;
        this.backingFile = backingFile;
        this.compression = compression;
    }

    /**
     * Takes the snapshot and starts copying on a thread of its own.
     *
     * @param target      the qcow2 file to create (must not exist)
     * @param backingFile the backing file to record in the target (the previous backup), or null
     * @param compression the target's compression type, written as compressed clusters; null for none
     * @throws BackupBusyException when another job holds the disk
     */
    public static PushBackupJob begin(String id, ManagedDisk disk, String since, String newCheckpoint,
            ScratchSpec scratch, CbwPolicy policy, Path target, String backingFile, CompressionType compression)
            throws IOException {
        if (Files.exists(target)) {
            throw BlockException.invalid(target.toString(), -1, "target: file exists (expected: a new path)");
        }
        if (disk.top().size() % 512 != 0) {
            throw BlockException.invalid(disk.name(), -1, "size: %d (expected: a multiple of 512 for a qcow2 "
                    + "target)", disk.top().size());
        }
        PushBackupJob job = new PushBackupJob(id, disk, since, newCheckpoint, target, backingFile, compression);
        Snapshot s = BackupJob.begin(job, scratch, policy, PullBackupJob.bitmapName(disk.name()));
        job.view = s.view();
        job.bitmap = s.bitmap();
        job.total = job.plan().stream().mapToLong(r -> r[1] - r[0]).sum();
        job.publish("started", null);
        Thread t = new Thread(job::run, "shear-push-" + id);
        t.setDaemon(true);
        t.start();
        return job;
    }

    @Override
    public String kind() {
        return "push";
    }

    public Path target() {
        return target;
    }

    /** The target's compression type, or null when the clusters are written uncompressed. */
    public CompressionType compression() {
        return compression;
    }

    /** Ranges [start, end) to process, in order, not overlapping. */
    private List<long[]> plan() {
        List<long[]> ranges = new ArrayList<>();
        long size = view.size();
        if (bitmap == null) {
            if (size > 0) {
                ranges.add(new long[] {0, size});
            }
            return ranges;
        }
        long cs = view.clusterSize();
        bitmap.forEachDirty(0, size, (off, len, dirty) -> {
            if (!dirty) {
                return true;
            }
            long a = off / cs * cs;
            long b = Math.min(size, (off + len + cs - 1) / cs * cs);
            if (!ranges.isEmpty() && ranges.get(ranges.size() - 1)[1] >= a) {
                long[] last = ranges.get(ranges.size() - 1);
                last[1] = Math.max(last[1], b);
            } else {
                ranges.add(new long[] {a, b});
            }
            return true;
        });
        return ranges;
    }

    private void run() {
        BlockDevice out = null;
        boolean created = false;
        try {
            Qcow2CreateOptions d = Qcow2CreateOptions.defaults(view.size());
            Qcow2CreateOptions o = new Qcow2CreateOptions(d.sizeBytes(), d.clusterSize(), d.version(),
                    compression == null ? d.compressionType() : compression.headerValue(), d.extendedL2(),
                    d.lazyRefcounts(), d.refcountBits(), d.preallocation(), backingFile,
                    backingFile == null ? null : "qcow2");
            Qcow2Creator.create(target, o);
            created = true;
            out = Images.open(target, ImageFormat.QCOW2, false, null);
            if (compression != null) {
                new CompressedCopy(view, (Qcow2Image) out, backingFile != null).copy(plan(), () -> abortRequested,
                        done::addAndGet);
            } else {
                ByteBuffer buf = ByteBuffer.allocateDirect(CHUNK_BYTES);
                for (long[] r : plan()) {
                    copyRange(r[0], r[1], out, buf);
                    if (abortRequested) {
                        break;
                    }
                }
            }
            if (abortRequested) {
                out.close();
                out = null;
                Files.deleteIfExists(target);
                releaseView();
                finish(JobState.ABORTED, "aborted", null);
                return;
            }
            out.flush();
            out.close();
            out = null;
            releaseView();
            finish(JobState.COMPLETED, "completed", null);
        } catch (IOException | RuntimeException e) {
            if (out != null) {
                try {
                    out.close();
                } catch (IOException ignored) {
                    // the failure reported is the first one
                }
            }
            if (created) {
                try {
                    Files.deleteIfExists(target);
                } catch (IOException ignored) {
                    // best effort: the report names the target
                }
            }
            try {
                releaseView();
            } catch (IOException ignored) {
                // the failure reported is the first one
            }
            finish(abortRequested ? JobState.ABORTED : JobState.FAILED, abortRequested ? "aborted" : "failed",
                    abortRequested ? null : e.getMessage());
        } finally {
            finished.countDown();
        }
    }

    /** Copies [start, end) of the snapshot to {@code out}, extent by extent, in chunks. */
    private void copyRange(long start, long end, BlockDevice out, ByteBuffer buf) throws IOException {
        long pos = start;
        while (pos < end && !abortRequested) {
            long stop = Math.min(end, pos + CHUNK_BYTES);
            List<Extent> extents = new ArrayList<>();
            view.blockStatus(pos, stop - pos, e -> {
                extents.add(e);
                return true;
            });
            long at = pos;
            for (Extent e : extents) {
                long a = Math.max(at, e.offset());
                long b = Math.min(stop, e.end());
                if (b <= a) {
                    continue;
                }
                if ((e.flags() & Extent.ZERO) != 0) {
                    if (backingFile != null) {
                        out.writeZeroes(a, b - a, 0);
                    }
                } else {
                    buf.clear().limit((int) (b - a));
                    view.read(a, buf);
                    buf.flip();
                    out.write(a, buf, 0);
                }
                at = b;
            }
            if (at < stop) {
                // Block status stopped short: copy the rest as data (always correct).
                buf.clear().limit((int) (stop - at));
                view.read(at, buf);
                buf.flip();
                out.write(at, buf, 0);
            }
            view.discard(pos, stop - pos, 0);
            done.addAndGet(stop - pos);
            pos = stop;
        }
    }

    private void releaseView() throws IOException {
        lastStats = view.stats();
        if (view.isBroken()) {
            String reason = view.brokenReason();
            view.close();
            throw new IOException("snapshot broken: " + reason);
        }
        view.close();
    }

    @Override
    long doneBytes() {
        return done.get();
    }

    @Override
    long totalBytes() {
        return total;
    }

    @Override
    public SnapshotStats snapshotStats() {
        SnapshotStats last = lastStats;
        return last != null ? last : view.stats();
    }

    /** Aborts a running job (the partial target is deleted) and waits for the copy thread to stop. */
    @Override
    public void end() throws IOException {
        if (state().isFinal()) {
            return;
        }
        abortRequested = true;
        awaitFinished(60_000);
    }

    /** Waits up to {@code millis} for the job to reach a final state; true if it did. */
    public boolean awaitFinished(long millis) {
        try {
            return finished.await(millis, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }
}
