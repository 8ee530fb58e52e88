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
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Supplier;

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
 * The plan is copied in chunks by {@link #WORKERS} threads in parallel (ascending claims, so the target
 * fills roughly in order). Each range written is then discarded on the snapshot: its copy in the
 * scratch is freed and later guest writes there are no longer copied. Progress is bytes processed of
 * the backup's extents, with rate and ETA. {@link #end()} aborts a running job and deletes the partial
 * target; a completed target passes {@code qemu-img check} and equals the snapshot per
 * {@code qemu-img compare}.
 *
 * <p>Compressed ({@code compression} not null): the target is created with that {@code compression_type}
 * and every cluster the backup writes is a compressed cluster (a normal one where compression gains
 * nothing, as QEMU), all-zero clusters are zero clusters; see {@link CompressedCopy} for whole clusters,
 * the disk's last partial cluster and incremental targets over a backing file.
 */
public final class PushBackupJob extends BackupJob {
    /** Bytes copied per read/write: bounds memory and how long a guest write waits behind us. */
    static final int CHUNK_BYTES = 1 << 20;
    /**
     * Copy threads: reads of the snapshot, writes (and compression) of the target overlap; the qcow2
     * engine writes different clusters in parallel. Memory: one chunk buffer each.
     */
    static final int WORKERS = 4;

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
    /** Ranges to copy, fixed at begin (the bitmap is frozen then), and their total bytes. */
    private List<long[]> plan;
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
        job.plan = job.plan();
        job.total = job.plan.stream().mapToLong(r -> r[1] - r[0]).sum();
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
            BlockDevice dst = out;
            copyParallel(plan, compression != null
                    ? () -> new CompressedCopy(view, (Qcow2Image) dst, backingFile != null)
                    : () -> new PlainCopy(view, dst, backingFile != null, chunkBytes()));
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

    /** Chunk size: {@link #CHUNK_BYTES}, or one snapshot cluster when that is larger (whole clusters). */
    private int chunkBytes() {
        return (int) Math.max(CHUNK_BYTES, view.clusterSize());
    }

    /**
     * Runs the plan on {@link #WORKERS} threads, each with a copier of its own: chunks are claimed in
     * ascending order, copied, then discarded on the snapshot and counted. The first failure stops
     * every worker and is thrown; an abort stops them between chunks.
     */
    private void copyParallel(List<long[]> plan, Supplier<ChunkCopier> copiers) throws IOException {
        Chunks chunks = new Chunks(plan, chunkBytes());
        AtomicReference<Throwable> failure = new AtomicReference<>();
        ChunkCopier[] workers = new ChunkCopier[WORKERS];
        for (int k = 0; k < workers.length; k++) {
            workers[k] = copiers.get();
        }
        Thread[] threads = new Thread[workers.length];
        for (int k = 0; k < threads.length; k++) {
            ChunkCopier c = workers[k];
            threads[k] = new Thread(() -> {
                long[] chunk = new long[2];
                try {
                    while (!abortRequested && failure.get() == null && chunks.next(chunk)) {
                        c.copyChunk(chunk[0], chunk[1]);
                        view.discard(chunk[0], chunk[1] - chunk[0], 0);
                        done.addAndGet(chunk[1] - chunk[0]);
                    }
                } catch (IOException | RuntimeException | Error e) {
                    failure.compareAndSet(null, e);
                }
            }, "shear-push-" + id() + "-" + k);
            threads[k].setDaemon(true);
            threads[k].start();
        }
        boolean interrupted = false;
        for (Thread t : threads) {
            while (true) {
                try {
                    t.join();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        Throwable f = failure.get();
        if (f instanceof IOException e) {
            throw e;
        } else if (f instanceof RuntimeException e) {
            throw e;
        } else if (f instanceof Error e) {
            throw e;
        }
    }

    /** Copies one chunk [start, stop) of the plan into the target; one per worker (own buffers). */
    interface ChunkCopier {
        void copyChunk(long start, long stop) throws IOException;
    }

    /** What a chunk holds, range by range, as {@link #walk} reports it. */
    interface RangeVisitor {
        /** [a, b) reads as zeros. */
        void zeros(long a, long b) throws IOException;

        /** [a, b) holds data (or may: block status said nothing about it). */
        void data(long a, long b) throws IOException;
    }

    /**
     * Walks [start, stop) of the snapshot by its block status, in order: zero ranges and data ranges;
     * a tail block status did not describe counts as data (always correct).
     *
     * @param extents scratch list, cleared first
     */
    static void walk(SnapshotView view, long start, long stop, List<Extent> extents, RangeVisitor v)
            throws IOException {
        extents.clear();
        view.blockStatus(start, stop - start, e -> {
            extents.add(e);
            return true;
        });
        long at = start;
        for (Extent e : extents) {
            long a = Math.max(at, e.offset());
            long b = Math.min(stop, e.end());
            if (b <= a) {
                continue;
            }
            if (e.isZero()) {
                v.zeros(a, b);
            } else {
                v.data(a, b);
            }
            at = b;
        }
        if (at < stop) {
            v.data(at, stop);
        }
    }

    /** The plan cut into chunks, handed out in ascending order to whichever worker asks. */
    private static final class Chunks {
        private final List<long[]> plan;
        private final int chunkBytes;
        private int range;
        private long pos;

        Chunks(List<long[]> plan, int chunkBytes) {
            this.plan = plan;
            this.chunkBytes = chunkBytes;
            this.pos = plan.isEmpty() ? 0 : plan.get(0)[0];
        }

        /** Claims the next chunk into {@code out} as [start, stop); false when none is left. */
        synchronized boolean next(long[] out) {
            while (range < plan.size()) {
                long[] r = plan.get(range);
                if (pos < r[1]) {
                    out[0] = pos;
                    out[1] = Math.min(r[1], pos + chunkBytes);
                    pos = out[1];
                    return true;
                }
                range++;
                if (range < plan.size()) {
                    pos = plan.get(range)[0];
                }
            }
            return false;
        }
    }

    /**
     * The uncompressed copy of a chunk, extent by extent: data extents read and written, zero extents
     * left unallocated (zero clusters over a backing file).
     */
    private static final class PlainCopy implements ChunkCopier, RangeVisitor {
        private final SnapshotView view;
        private final BlockDevice out;
        private final boolean hasBacking;
        private final ByteBuffer buf;
        private final List<Extent> extents = new ArrayList<>();

        PlainCopy(SnapshotView view, BlockDevice out, boolean hasBacking, int chunkBytes) {
            this.view = view;
            this.out = out;
            this.hasBacking = hasBacking;
            this.buf = ByteBuffer.allocateDirect(chunkBytes);
        }

        @Override
        public void copyChunk(long start, long stop) throws IOException {
            walk(view, start, stop, extents, this);
        }

        @Override
        public void zeros(long a, long b) throws IOException {
            if (hasBacking) {
                out.writeZeroes(a, b - a, 0);
            }
        }

        @Override
        public void data(long a, long b) throws IOException {
            copy(a, b);
        }

        private void copy(long a, long b) throws IOException {
            buf.clear().limit((int) (b - a));
            view.read(a, buf);
            buf.flip();
            out.write(a, buf, 0);
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
