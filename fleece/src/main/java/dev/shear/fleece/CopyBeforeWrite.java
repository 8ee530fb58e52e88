package dev.shear.fleece;

import dev.shear.block.BlockCapabilities;
import dev.shear.block.BlockDevice;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.ExtentSink;
import dev.shear.block.ReadSegmentSink;
import dev.shear.fleece.scratch.ScratchTarget;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Objects;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * Copy-before-write ("fleecing"): a decorator of the live device that, while a snapshot is active,
 * copies the old contents of every cluster the snapshot still needs to a {@link ScratchTarget} before
 * letting a write, write-zeroes or discard change it (design.md §The block graph, §The fleecing
 * invariant; dirty-bitmaps.md §8). The snapshot is read through the {@link SnapshotView} returned by
 * {@link #startSnapshot}. Without an active snapshot every call passes straight through.
 *
 * <h2>The fleecing invariant (design.md, verbatim)</h2>
 * <blockquote>
 * A reader of the snapshot must never see data written after the snapshot point. With per-cluster
 * locks: a writer takes the cluster exclusively, copies the old data if the snapshot still needs it,
 * marks it copied, releases, then writes the live image; a snapshot reader takes the cluster shared,
 * reads the target if copied and the live image otherwise, then releases. Discard and write-zeroes
 * on the live image go through the same path. Whole clusters are copied even for a partial write.
 * A discard on the snapshot export tells the server that the client has read that range: the copied
 * data is freed and later writes there are no longer copied. A test must hammer this invariant
 * (concurrent random writes on the live export and reads of the snapshot, byte-for-byte comparison
 * with the image as it was at the snapshot point).
 * </blockquote>
 * ({@code CopyBeforeWriteStressTest} hammers it.)
 *
 * <h2>Lock protocol</h2>
 * Locks, outermost first; a thread takes them only in this order and never holds one while calling
 * back into this class:
 * <ol>
 *   <li>{@link #gate} — shared by every mutating call of this device and every call of the view, for
 *       the call's whole duration (the live write included); exclusive only for the instant a snapshot
 *       starts or ends. So the snapshot point is a barrier: no write is half-done when it is taken, and
 *       the scratch target is never closed under a copy or a read. Shared holders never exclude each
 *       other: this is not a data-path lock, only a drain.</li>
 *   <li>Cluster locks ({@link ClusterLocks}): striped read-write locks, a range always taken in
 *       ascending stripe order (ascending cluster order when the range does not wrap the stripe table).
 *       Writers take their request's clusters exclusively, readers a chunk of at most
 *       {@link SnapshotView#READ_CHUNK_BYTES} shared, the snapshot client's discard one cluster
 *       exclusively at a time.</li>
 *   <li>Leaves: the scratch target's internal lock and the live device's own locks.</li>
 * </ol>
 *
 * <p>Writer (write, write-zeroes, discard of the live device), for request [offset, offset + length):
 * <ol>
 *   <li>gate shared; {@code s = active};</li>
 *   <li>if any cluster of the range (widened outward to whole clusters) is NEEDED — a lock-free read,
 *       sound because no cluster ever returns to NEEDED — lock the range exclusively and, for each
 *       cluster still NEEDED: if the snapshot is broken mark it ABANDONED (no copy); else if the live
 *       device's block status says the whole cluster is zero/hole, mark it ZERO (nothing copied: the
 *       snapshot reads zeros there); else read the whole cluster from the live device, put it into the
 *       scratch target and mark it COPIED. Unlock;</li>
 *   <li>pass the request to the live device — outside the cluster locks: every cluster it touches has
 *       left NEEDED under its exclusive lock, so no snapshot reader reads it from the live device again;</li>
 *   <li>release the gate.</li>
 * </ol>
 * A writer whose clusters are all out of NEEDED takes no cluster lock at all: writes to already-copied
 * clusters cost one shared gate acquisition. Writers to different clusters proceed in parallel; even
 * the copies run in parallel (the scratch's lock covers only its index).
 *
 * <p>Why ABANDONED needs the exclusive lock: a reader may have checked "not broken" under its shared
 * lock just before the snapshot broke and be reading the cluster from the live device; the writer
 * waits for it, so that reader's bytes are still the snapshot's.
 *
 * <h2>Failures and cbw-timeout</h2>
 * A failed copy (the scratch says NO_SPACE, or I/O fails on either side) applies the snapshot's
 * {@link CbwPolicy}: BREAK_SNAPSHOT records the first failure, marks the cluster ABANDONED and lets the
 * request through (and every later one, without copying); BREAK_GUEST_WRITE fails the request with the
 * copy's error kind and leaves the live device and the cluster untouched (clusters of the same request
 * copied before the failure stay copied: their copies are valid).
 *
 * <p>The timeout ({@link CbwLimits#cbwTimeout()}) is measured per request, from the start of its first
 * cluster copy to the end of each cluster copy (live read + scratch put), on {@link System#nanoTime()};
 * waiting for cluster locks is not counted. Nothing is interrupted: a read or put that has begun runs to
 * its end, and the deadline is checked when it returns. So the limit bounds how long one request keeps
 * copying, not a single stuck put. When it is exceeded: BREAK_SNAPSHOT breaks the snapshot, the
 * request's remaining clusters are ABANDONED and the request proceeds at once; BREAK_GUEST_WRITE keeps
 * the clusters copied so far (valid), and fails the request with IO ("timed out"), as QEMU does.
 *
 * <p>{@link #close()} ends an active snapshot and closes the live device (this decorator owns it).
 */
public final class CopyBeforeWrite implements BlockDevice {
    private final BlockDevice live;
    private final int lockStripes;

    /** Guards {@link #active} and {@link #closed}: see the lock protocol. */
    private final ReentrantReadWriteLock gate = new ReentrantReadWriteLock();
    /** The running snapshot or null; written under gate exclusive, read under gate shared. */
    private SnapshotState active;
    /** Written under gate exclusive, read under gate shared. */
    private boolean closed;

    /** Wraps {@code live}; nothing is copied until {@link #startSnapshot}. */
    public CopyBeforeWrite(BlockDevice live) {
        this(live, ClusterLocks.DEFAULT_STRIPES);
    }

    CopyBeforeWrite(BlockDevice live, int lockStripes) {
        this.live = Objects.requireNonNull(live, "live");
        this.lockStripes = lockStripes;
    }

    /**
     * The copy granularity a snapshot of {@code live} gets with {@code limits}: the larger of the
     * limits' minimum (at least 64 KiB) and the live device's preferred block size (its cluster size).
     * A scratch target with its own geometry (qcow2) is created with this cluster size.
     */
    public static int copyGranularity(BlockDevice live, CbwLimits limits) {
        int preferred = live.capabilities().preferredBlockSize();
        return Math.min(CbwLimits.MAX_CLUSTER_SIZE, Math.max(limits.minClusterSize(), preferred));
    }

    /**
     * A full snapshot with the default policy and limits; see
     * {@link #startSnapshot(SnapshotOptions, ScratchTarget, Runnable)}.
     */
    public SnapshotView startSnapshot(ScratchTarget scratch) throws IOException {
        return startSnapshot(SnapshotOptions.full(), scratch, null);
    }

    /**
     * Takes a snapshot now. Waits for writes in flight to finish, runs {@code atSnapshotPoint} (if not
     * null) while no write is in flight — the place to freeze the backup's dirty bitmap and create the
     * next checkpoint's, so that both mark the same instant — then activates copy-before-write.
     *
     * <p>On exit the view reads the device as it was at that instant. The view owns {@code scratch}:
     * closing the view ends the snapshot and closes (deletes) the scratch target. One snapshot at a time.
     *
     * @throws BlockException INVALID_ARGUMENT when a snapshot is already active, SHUTDOWN when closed;
     *         {@code scratch} is closed whenever no snapshot was started
     */
    public SnapshotView startSnapshot(SnapshotOptions options, ScratchTarget scratch, Runnable atSnapshotPoint)
            throws IOException {
        return startSnapshot(options, scratch, atSnapshotPoint, null);
    }

    private SnapshotView startSnapshot(SnapshotOptions options, ScratchTarget scratch, Runnable atSnapshotPoint,
            Consumer<SnapshotState> atPointWithState) throws IOException {
        Objects.requireNonNull(options, "options");
        Objects.requireNonNull(scratch, "scratch");
        int clusterSize = copyGranularity(live, options.limits());
        boolean started = false;
        try {
            // Built before the barrier: expanding an incremental selection walks the whole bitmap.
            SnapshotState s = new SnapshotState(live, scratch, options, clusterSize, lockStripes);
            gate.writeLock().lock();
            try {
                if (closed) {
                    throw new BlockException(BlockErrorKind.SHUTDOWN, name(), -1, "snapshot: device closed");
                }
                if (active != null) {
                    throw BlockException.invalid(name(), -1, "snapshot: one is already active (expected: none)");
                }
                if (atSnapshotPoint != null) {
                    atSnapshotPoint.run();
                }
                if (atPointWithState != null) {
                    atPointWithState.accept(s);
                }
                active = s;
                started = true;
            } finally {
                gate.writeLock().unlock();
            }
            return new SnapshotView(this, s);
        } finally {
            if (!started) {
                scratch.close();   // the view would have owned it
            }
        }
    }

    /**
     * As {@link #startSnapshot(SnapshotOptions, ScratchTarget, Runnable)}, for an incremental snapshot
     * whose bitmap keeps changing until the snapshot point: {@code options.selection()} is expanded
     * before the barrier (the long walk), then {@code atSnapshotPoint} runs inside it and returns the
     * clusters dirtied since that walk (or null), which are added to the selection before
     * copy-before-write starts. So the snapshot covers exactly the bitmap as frozen at the point.
     */
    public SnapshotView startSnapshotCovering(SnapshotOptions options, ScratchTarget scratch,
            Supplier<CopySelection> atSnapshotPoint) throws IOException {
        Objects.requireNonNull(atSnapshotPoint, "atSnapshotPoint");
        return startSnapshot(options, scratch, null, st -> {
            CopySelection extra = atSnapshotPoint.get();
            if (extra != null) {
                st.cover(extra);
            }
        });
    }

    /** Ends {@code s}: copy-before-write stops, the view answers SHUTDOWN, the scratch is closed. */
    void endSnapshot(SnapshotState s) throws IOException {
        gate.writeLock().lock();
        try {
            if (s.isClosed()) {
                return;
            }
            s.markClosed();
            if (active == s) {
                active = null;
            }
        } finally {
            gate.writeLock().unlock();
        }
        s.scratch.close();
    }

    /** The snapshot's gate, shared by the view's calls. */
    ReentrantReadWriteLock gate() {
        return gate;
    }

    public BlockDevice live() {
        return live;
    }

    @Override
    public String name() {
        return live.name();
    }

    @Override
    public long size() {
        return live.size();
    }

    @Override
    public BlockCapabilities capabilities() {
        return live.capabilities();
    }

    // --- reads pass through: the live device is the live device ---

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        live.read(offset, dst);
    }

    @Override
    public void readSegments(long offset, long length, ReadSegmentSink sink) throws IOException {
        live.readSegments(offset, length, sink);
    }

    @Override
    public void blockStatus(long offset, long length, ExtentSink sink) throws IOException {
        live.blockStatus(offset, length, sink);
    }

    // --- mutations: copy first ---

    @Override
    public void write(long offset, ByteBuffer src, int flags) throws IOException {
        checkRange(offset, src.remaining());
        gate.readLock().lock();
        try {
            copyBefore(offset, src.remaining());
            live.write(offset, src, flags);
        } finally {
            gate.readLock().unlock();
        }
    }

    @Override
    public void writeZeroes(long offset, long length, int flags) throws IOException {
        checkRange(offset, length);
        gate.readLock().lock();
        try {
            copyBefore(offset, length);
            live.writeZeroes(offset, length, flags);
        } finally {
            gate.readLock().unlock();
        }
    }

    @Override
    public void discard(long offset, long length, int flags) throws IOException {
        checkRange(offset, length);
        gate.readLock().lock();
        try {
            copyBefore(offset, length);
            live.discard(offset, length, flags);
        } finally {
            gate.readLock().unlock();
        }
    }

    @Override
    public void flush() throws IOException {
        live.flush();
    }

    @Override
    public void close() throws IOException {
        SnapshotState s;
        gate.writeLock().lock();
        try {
            closed = true;
            s = active;
        } finally {
            gate.writeLock().unlock();
        }
        try {
            if (s != null) {
                endSnapshot(s);
            }
        } finally {
            live.close();
        }
    }

    /**
     * Step 2 of the writer protocol for [offset, offset + length).
     * On entry: the gate is held shared. On exit: no cluster of the range is NEEDED, or an exception
     * under BREAK_GUEST_WRITE says the request must not reach the live device.
     */
    private void copyBefore(long offset, long length) throws IOException {
        SnapshotState s = active;
        if (s == null || length == 0) {
            return;
        }
        long first = offset >>> s.clusterBits;
        long last = (offset + length - 1) >>> s.clusterBits;
        if (!s.copyState.any(first, last, CopyState.NEEDED)) {
            return;
        }
        s.locks.lockExclusive(first, last);
        try {
            long copyStart = 0;
            for (long c = first; c <= last; c++) {
                if (s.copyState.get(c) != CopyState.NEEDED) {
                    continue;
                }
                if (s.isBroken()) {
                    s.copyState.set(c, CopyState.ABANDONED);
                    s.abandoned.increment();
                    continue;
                }
                if (copyStart == 0) {
                    copyStart = System.nanoTime() | 1;   // | 1: never 0, which means "not started"
                }
                try {
                    copyCluster(s, c);
                } catch (IOException e) {
                    BlockException failure = copyFailure(s, c, e);
                    if (s.policy == CbwPolicy.BREAK_GUEST_WRITE) {
                        throw failure;
                    }
                    s.breakSnapshot(failure);
                    s.copyState.set(c, CopyState.ABANDONED);
                    s.abandoned.increment();
                    continue;
                }
                long elapsed = System.nanoTime() - copyStart;
                if (s.timeoutNanos > 0 && elapsed > s.timeoutNanos) {
                    BlockException late = new BlockException(BlockErrorKind.IO, name(), s.clusterStart(c),
                            String.format("copy-before-write: timed out after %.1f ms at cluster %d "
                                    + "(expected: <= cbw-timeout %.1f ms)", elapsed / 1e6, c, s.timeoutNanos / 1e6));
                    if (s.policy == CbwPolicy.BREAK_GUEST_WRITE) {
                        throw late;
                    }
                    s.breakSnapshot(late);   // the rest of the range is ABANDONED by the loop
                }
            }
        } finally {
            s.locks.unlockExclusive(first, last);
        }
    }

    /** Copies one cluster. On entry: its exclusive lock is held and it is NEEDED. */
    private void copyCluster(SnapshotState s, long c) throws IOException {
        long start = s.clusterStart(c);
        int length = s.clusterLength(c);
        if (isZeroOnLive(start, length)) {
            s.copyState.set(c, CopyState.ZERO);
            s.zero.increment();
            return;
        }
        ByteBuffer buf = s.copyBuffer().limit(length);
        live.read(start, buf);
        buf.flip();
        s.scratch.put(c, buf);
        s.copyState.set(c, CopyState.COPIED);
        s.copied.increment();
        s.copiedBytes.add(length);
    }

    /** True when the live device's block status says all of [start, start + length) reads as zeros. */
    private boolean isZeroOnLive(long start, int length) throws IOException {
        long end = start + length;
        boolean[] zero = {true};
        long[] covered = {start};
        live.blockStatus(start, length, e -> {
            if (!e.isZero()) {
                zero[0] = false;
                return false;
            }
            covered[0] = Math.max(covered[0], e.end());
            return e.end() < end;
        });
        return zero[0] && covered[0] >= end;
    }

    private BlockException copyFailure(SnapshotState s, long c, IOException e) {
        BlockErrorKind kind = e instanceof BlockException b ? b.kind() : BlockErrorKind.IO;
        if (kind != BlockErrorKind.NO_SPACE) {
            kind = BlockErrorKind.IO;   // whatever the scratch or live said, to the guest it is an I/O error
        }
        return new BlockException(kind, name(), s.clusterStart(c),
                "copy-before-write: cluster " + c + " to " + s.scratch.name() + ": " + e.getMessage(), e);
    }

    /** The active snapshot's state, or null (tests). */
    SnapshotState activeState() {
        gate.readLock().lock();
        try {
            return active;
        } finally {
            gate.readLock().unlock();
        }
    }
}
