package dev.shear.fleece;

import dev.shear.block.BlockCapabilities;
import dev.shear.block.BlockDevice;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.Extent;
import dev.shear.block.ExtentSink;
import dev.shear.block.ReadSegment;
import dev.shear.block.ReadSegmentSink;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The point-in-time view of a device under {@link CopyBeforeWrite}: a read-only {@link BlockDevice}
 * that reads copied clusters from the scratch target and the others from the live device, under the
 * cluster locks (the protocol is in {@link CopyBeforeWrite}). Obtained from
 * {@link CopyBeforeWrite#startSnapshot}; {@link #close()} ends the snapshot and deletes the scratch.
 *
 * <p>What each cluster reads as, and what block status reports for it:
 * <table>
 *   <caption>cluster states</caption>
 *   <tr><th>state</th><th>read</th><th>block status</th></tr>
 *   <tr><td>not copied yet</td><td>live device</td><td>the live device's extents (its contents are still
 *       the snapshot's)</td></tr>
 *   <tr><td>copied</td><td>scratch target</td><td>data at depth 0, or zero when the scratch knows the
 *       copy is all zeros — never the live device's status (after a live write-zeroes or discard the
 *       snapshot still has data there; QEMU 7.2 got this wrong, dirty-bitmaps.md §8.6)</td></tr>
 *   <tr><td>was zero at the first write</td><td>zeros</td><td>hole, zero</td></tr>
 *   <tr><td>discarded by the client</td><td>zeros (the client promised not to read it again; any
 *       content would do, zeros are cheapest and stable)</td><td>hole, zero</td></tr>
 *   <tr><td>outside an incremental selection</td><td>fails: INVALID_ARGUMENT (EINVAL), as QEMU</td>
 *       <td>data: the truth is unknown, and "data" is always a safe answer (a client never skips
 *       it as zero); we report rather than fail the whole request as QEMU does</td></tr>
 * </table>
 *
 * <p>Once the snapshot is broken (see {@link CbwPolicy#BREAK_SNAPSHOT}) every read and block status fails
 * with {@link BlockErrorKind#IO} (EIO) whose message names the original failure; after {@link #close()}
 * every call fails with SHUTDOWN.
 *
 * <p>{@link #discard} is the one mutating call accepted: "I have read this range". It is aligned inward
 * to whole clusters (a sub-cluster remainder is ignored, where QEMU 7.2 aborted), frees the copies in
 * the scratch and stops future copies of those clusters. Write and write-zeroes fail with READ_ONLY.
 * {@link #capabilities()} says canWrite=false and canTrim=true; an NBD export must still be writable
 * for a client to send TRIM (QEMU exports it with writable=on for that reason).
 */
public final class SnapshotView implements BlockDevice {
    /** Largest range a reader locks at once: bounds how long a guest write waits behind a snapshot read. */
    static final int READ_CHUNK_BYTES = 1 << 20;

    private static final byte[] ZEROS = new byte[1 << 16];

    private final CopyBeforeWrite cbw;
    private final SnapshotState s;
    private final String name;
    private final BlockCapabilities capabilities;
    private final long chunkClusters;

    SnapshotView(CopyBeforeWrite cbw, SnapshotState s) {
        this.cbw = cbw;
        this.s = s;
        this.name = s.live.name() + " (snapshot)";
        BlockCapabilities lc = s.live.capabilities();
        int max = lc.maximumBlockSize();
        this.capabilities = new BlockCapabilities(false, false, false, true, false, false, true,
                1, Math.min(s.clusterSize, Integer.highestOneBit(max)), max);
        this.chunkClusters = Math.max(1, READ_CHUNK_BYTES >>> s.clusterBits);
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public long size() {
        return s.size;
    }

    @Override
    public BlockCapabilities capabilities() {
        return capabilities;
    }

    /** The copy granularity in bytes. */
    public int clusterSize() {
        return s.clusterSize;
    }

    public CbwPolicy policy() {
        return s.policy;
    }

    public boolean isBroken() {
        return s.isBroken();
    }

    /** Why the snapshot broke, or null. */
    public String brokenReason() {
        return s.brokenReason();
    }

    public SnapshotStats stats() {
        return s.stats();
    }

    SnapshotState state() {
        return s;
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        int length = dst.remaining();
        checkRange(offset, length);
        if (length == 0) {
            return;
        }
        enter();
        try {
            long pos = offset;
            long end = offset + length;
            long lastCluster = (end - 1) >>> s.clusterBits;
            while (pos < end) {
                long first = pos >>> s.clusterBits;
                long chunkLast = Math.min(lastCluster, first + chunkClusters - 1);
                long chunkEnd = Math.min(end, s.clusterStart(chunkLast + 1));
                s.locks.lockShared(first, chunkLast);
                try {
                    if (s.isBroken()) {
                        throw s.brokenError(name, pos);
                    }
                    while (pos < chunkEnd) {
                        pos = readPiece(pos, chunkEnd, chunkLast, dst);
                    }
                } finally {
                    s.locks.unlockShared(first, chunkLast);
                }
            }
        } finally {
            exit();
        }
    }

    /**
     * Reads from {@code pos} up to the end of a run of clusters with the same source, at most to
     * {@code chunkEnd}; returns where it stopped. On entry: the chunk's clusters are locked shared.
     */
    private long readPiece(long pos, long chunkEnd, long chunkLast, ByteBuffer dst) throws IOException {
        long c = pos >>> s.clusterBits;
        long clusterEnd = Math.min(chunkEnd, s.clusterStart(c + 1));
        int state = s.copyState.get(c);
        switch (state) {
            case CopyState.NEEDED -> {
                // One live read for the whole run of uncopied clusters.
                long runEnd = s.copyState.runEnd(c, chunkLast + 1, CopyState.NEEDED);
                long stop = Math.min(chunkEnd, s.clusterStart(runEnd));
                int oldLimit = dst.limit();
                dst.limit(dst.position() + (int) (stop - pos));
                try {
                    s.live.read(pos, dst);
                } finally {
                    dst.limit(oldLimit);
                }
                return stop;
            }
            case CopyState.COPIED -> {
                int oldLimit = dst.limit();
                dst.limit(dst.position() + (int) (clusterEnd - pos));
                try {
                    s.scratch.get(c, (int) (pos - s.clusterStart(c)), dst);
                } finally {
                    dst.limit(oldLimit);
                }
                return clusterEnd;
            }
            case CopyState.ZERO, CopyState.RELEASED -> {
                fillZeros(dst, (int) (clusterEnd - pos));
                return clusterEnd;
            }
            case CopyState.NOT_COVERED -> throw notCovered(c, pos);
            default -> throw s.brokenError(name, pos);   // ABANDONED implies broken, checked under this lock
        }
    }

    @Override
    public void readSegments(long offset, long length, ReadSegmentSink sink) throws IOException {
        checkRange(offset, length);
        if (length == 0) {
            return;
        }
        enter();
        try {
            if (s.isBroken()) {
                throw s.brokenError(name, offset);
            }
            // Zeros for clusters that can only ever read as zeros from now on (ZERO and RELEASED are
            // final); everything else is read with read(), under the locks.
            long pos = offset;
            long end = offset + length;
            long copyFrom = -1;
            while (pos < end) {
                long c = pos >>> s.clusterBits;
                long stop = Math.min(end, s.clusterStart(c + 1));
                int state = s.copyState.get(c);
                boolean zeros = state == CopyState.ZERO || state == CopyState.RELEASED;
                if (zeros) {
                    if (copyFrom >= 0) {
                        sink.accept(new ReadSegment.Copy(copyFrom, pos - copyFrom));
                        copyFrom = -1;
                    }
                    sink.accept(new ReadSegment.Zeros(stop - pos));
                } else if (copyFrom < 0) {
                    copyFrom = pos;
                }
                pos = stop;
            }
            if (copyFrom >= 0) {
                sink.accept(new ReadSegment.Copy(copyFrom, end - copyFrom));
            }
        } finally {
            exit();
        }
    }

    @Override
    public void blockStatus(long offset, long length, ExtentSink sink) throws IOException {
        checkRange(offset, length);
        if (length == 0) {
            return;
        }
        enter();
        try {
            if (s.isBroken()) {
                throw s.brokenError(name, offset);
            }
            long pos = offset;
            long end = offset + length;
            long lastCluster = (end - 1) >>> s.clusterBits;
            Extent pending = null;
            while (pos < end) {
                long c = pos >>> s.clusterBits;
                int state = s.copyState.get(c);   // lock-free: only NEEDED can still change under us
                if (state != CopyState.NEEDED) {
                    Extent e = finalExtent(c, state, pos, Math.min(end, s.clusterStart(c + 1)));
                    if (pending != null && pending.continuesWith(e)) {
                        pending = pending.merge(e);
                    } else {
                        if (pending != null && !sink.accept(pending)) {
                            return;
                        }
                        pending = e;
                    }
                    pos = e.end();
                    continue;
                }
                if (pending != null) {
                    if (!sink.accept(pending)) {
                        return;
                    }
                    pending = null;
                }
                long chunkLast = Math.min(lastCluster, c + chunkClusters - 1);
                s.locks.lockShared(c, chunkLast);
                try {
                    if (s.isBroken()) {
                        throw s.brokenError(name, pos);
                    }
                    if (s.copyState.get(c) != CopyState.NEEDED) {
                        continue;   // copied since we looked: take the final-state branch
                    }
                    long runEnd = s.copyState.runEnd(c, chunkLast + 1, CopyState.NEEDED);
                    long stop = Math.min(end, s.clusterStart(runEnd));
                    if (!forwardLive(pos, stop, sink)) {
                        return;
                    }
                    pos = stop;
                } finally {
                    s.locks.unlockShared(c, chunkLast);
                }
            }
            if (pending != null) {
                sink.accept(pending);
            }
        } finally {
            exit();
        }
    }

    /** The extent of a cluster whose state can no longer change to "read the live device". */
    private Extent finalExtent(long c, int state, long from, long to) throws BlockException {
        return switch (state) {
            case CopyState.COPIED -> s.scratch.isZero(c)
                    ? Extent.zero(from, to - from, 0)
                    : Extent.data(from, to - from, 0, -1);
            case CopyState.ZERO, CopyState.RELEASED -> Extent.hole(from, to - from);
            case CopyState.NOT_COVERED -> Extent.data(from, to - from, 0, -1);
            default -> throw s.brokenError(name, from);
        };
    }

    /**
     * Passes the live device's extents for [from, to) to {@code sink}, clipped. Returns false when the
     * sink asked to stop. On entry: the clusters of the range are locked shared and NEEDED.
     */
    private boolean forwardLive(long from, long to, ExtentSink sink) throws IOException {
        boolean[] more = {true};
        long[] next = {from};
        s.live.blockStatus(from, to - from, e -> {
            long a = Math.max(e.offset(), next[0]);
            long b = Math.min(e.end(), to);
            if (b <= a) {
                return b < to;
            }
            Extent clipped = a == e.offset() && b == e.end() ? e : e.clip(a, b);
            next[0] = b;
            if (!sink.accept(clipped)) {
                more[0] = false;
                return false;
            }
            return b < to;
        });
        if (more[0] && next[0] < to) {
            // A live device that stopped short (it may): say "data" for the rest, the safe answer.
            more[0] = sink.accept(Extent.data(next[0], to - next[0], 0, -1));
        }
        return more[0];
    }

    /**
     * "I have read [offset, offset + length)": aligned inward to whole clusters (the device's last,
     * short cluster counts as whole when the range reaches the end); each such cluster's copy is freed
     * and it is never copied again. Reads of it return zeros from now on.
     */
    @Override
    public void discard(long offset, long length, int flags) throws IOException {
        checkRange(offset, length);
        enter();
        try {
            long end = offset + length;
            long first = (offset + s.clusterSize - 1) >>> s.clusterBits;
            long stop = end == s.size ? s.clusterCount : end >>> s.clusterBits;
            for (long c = first; c < stop; c++) {
                int state = s.copyState.get(c);
                if (state == CopyState.RELEASED || state == CopyState.NOT_COVERED) {
                    continue;   // final: nothing to free, nothing to stop
                }
                s.locks.lockExclusive(c, c);
                try {
                    state = s.copyState.get(c);
                    if (state == CopyState.COPIED) {
                        s.scratch.remove(c);
                    }
                    if (state != CopyState.RELEASED && state != CopyState.NOT_COVERED) {
                        s.copyState.set(c, CopyState.RELEASED);
                        s.released.increment();
                    }
                } finally {
                    s.locks.unlockExclusive(c, c);
                }
            }
        } finally {
            exit();
        }
    }

    /** Ends the snapshot: copy-before-write stops, this view answers SHUTDOWN, the scratch is deleted. */
    @Override
    public void close() throws IOException {
        cbw.endSnapshot(s);
    }

    private void enter() throws BlockException {
        cbw.gate().readLock().lock();
        if (s.isClosed()) {
            cbw.gate().readLock().unlock();
            throw new BlockException(BlockErrorKind.SHUTDOWN, name, -1, "snapshot: ended");
        }
    }

    private void exit() {
        cbw.gate().readLock().unlock();
    }

    private BlockException notCovered(long c, long pos) {
        return BlockException.invalid(name, pos, "read: cluster %d is not part of this incremental snapshot"
                + " (expected: a cluster dirty in the backup's bitmap)", c);
    }

    private static void fillZeros(ByteBuffer dst, int length) {
        int left = length;
        while (left > 0) {
            int n = Math.min(ZEROS.length, left);
            dst.put(ZEROS, 0, n);
            left -= n;
        }
    }
}
