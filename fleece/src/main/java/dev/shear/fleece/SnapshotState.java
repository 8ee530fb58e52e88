package dev.shear.fleece;

import dev.shear.block.BlockDevice;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.fleece.scratch.ScratchTarget;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.LongAdder;

/**
 * Everything one snapshot shares between its writer side ({@link CopyBeforeWrite}) and its reader side
 * ({@link SnapshotView}): geometry, per-cluster state and locks, the scratch target, the policy, and
 * whether it broke. The protocol that uses it is in {@link CopyBeforeWrite}'s javadoc.
 */
final class SnapshotState {
    final BlockDevice live;
    final ScratchTarget scratch;
    final CbwPolicy policy;
    /** cbw-timeout in nanoseconds, 0 for none. */
    final long timeoutNanos;
    final int clusterBits;
    final int clusterSize;
    final long clusterCount;
    final long size;
    /** Per-cluster state; transitions out of NEEDED under the cluster's exclusive lock. */
    final CopyState copyState;
    /** Per-cluster shared/exclusive locks. */
    final ClusterLocks locks;
    /** Clusters covered; final once the snapshot is active (set under the gate's exclusive lock before). */
    long coveredClusters;

    /** The first failure that broke the snapshot; set once (compare-and-set), never cleared. */
    private final AtomicReference<BlockException> broken = new AtomicReference<>();
    /** Set under the gate's exclusive lock when the snapshot ends; read under the gate's shared lock. */
    private volatile boolean closed;
    /** A cluster-sized copy buffer per writing thread; direct: the live read and a raw scratch write copy nothing. */
    private final ThreadLocal<ByteBuffer> copyBuffers;

    final LongAdder copied = new LongAdder();
    final LongAdder zero = new LongAdder();
    final LongAdder released = new LongAdder();
    final LongAdder abandoned = new LongAdder();
    final LongAdder copiedBytes = new LongAdder();

    SnapshotState(BlockDevice live, ScratchTarget scratch, SnapshotOptions options, int clusterSize,
            int lockStripes) {
        this.live = live;
        this.scratch = scratch;
        this.policy = options.policy();
        this.timeoutNanos = options.limits().timeoutNanos();
        this.clusterSize = clusterSize;
        this.clusterBits = Integer.numberOfTrailingZeros(clusterSize);
        this.size = live.size();
        this.clusterCount = (size + clusterSize - 1) >>> clusterBits;
        if (options.selection() instanceof CopySelection.All) {
            this.copyState = CopyState.full(clusterCount);
            this.coveredClusters = clusterCount;
        } else {
            this.copyState = CopyState.none(clusterCount);
            options.selection().select(copyState, clusterBits, size);
            this.coveredClusters = copyState.count(CopyState.NEEDED);
        }
        this.locks = new ClusterLocks(lockStripes);
        this.copyBuffers = ThreadLocal.withInitial(() -> ByteBuffer.allocateDirect(clusterSize));
    }

    /**
     * Adds {@code extra}'s clusters to the selection. On entry: the snapshot is not active yet and no
     * writer can see this state (the caller holds the gate exclusively), so every cluster is still
     * NEEDED or NOT_COVERED.
     */
    void cover(CopySelection extra) {
        if (extra instanceof CopySelection.All || coveredClusters == clusterCount) {
            return;
        }
        extra.select(copyState, clusterBits, size);
        coveredClusters = copyState.count(CopyState.NEEDED);
    }

    long clusterStart(long cluster) {
        return cluster << clusterBits;
    }

    /** Length of cluster {@code c}: the cluster size, less for the device's last cluster. */
    int clusterLength(long cluster) {
        return (int) Math.min(clusterSize, size - clusterStart(cluster));
    }

    ByteBuffer copyBuffer() {
        return copyBuffers.get().clear();
    }

    boolean isBroken() {
        return broken.get() != null;
    }

    /** Breaks the snapshot; the first reason wins. */
    void breakSnapshot(BlockException reason) {
        broken.compareAndSet(null, reason);
    }

    /** The error every read of a broken snapshot gets: IO (EIO), naming the first failure. */
    BlockException brokenError(String viewName, long offset) {
        BlockException cause = broken.get();
        return new BlockException(BlockErrorKind.IO, viewName, offset,
                "snapshot broken: " + cause.getMessage(), cause);
    }

    String brokenReason() {
        BlockException b = broken.get();
        return b == null ? null : b.getMessage();
    }

    boolean isClosed() {
        return closed;
    }

    void markClosed() {
        closed = true;
    }

    SnapshotStats stats() {
        return new SnapshotStats(clusterSize, clusterCount, coveredClusters, copied.sum(), zero.sum(),
                released.sum(), abandoned.sum(), copiedBytes.sum(), scratch.usedBytes(), brokenReason());
    }
}
