package dev.shear.fleece.job;

import dev.shear.block.Extent;
import dev.shear.block.Zeros;
import dev.shear.fleece.SnapshotView;
import dev.shear.qcow2.Qcow2Image;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The copy loop of a compressed push backup: writes the snapshot's ranges into the target as compressed
 * clusters (qcow2-format.md §7), with the meaning of {@code qemu-img convert -c} and of QEMU's backup job
 * with {@code compress=on}.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>The unit of work is the target's cluster: {@link Qcow2Image#writeCompressed} takes whole clusters
 *       only. Every range of a push plan starts and ends on a snapshot cluster boundary (or the end of
 *       the disk), and the copy granularity ({@code CbwLimits.MIN_CLUSTER_SIZE} = 64 KiB at least, a power
 *       of two) is a multiple of the target's cluster size (64 KiB): so every range is whole target
 *       clusters, checked on construction. An incremental backup never needs bytes outside its
 *       selection, which the snapshot would refuse to read.</li>
 *   <li>The last cluster of a disk whose size is not a multiple of the cluster size is passed as its
 *       bytes up to the end of the disk; the engine pads it with zeros before compressing, as QEMU's
 *       {@code qcow2_co_pwritev_compressed_part} does for {@code convert -c}.</li>
 *   <li>A cluster that is all zeros is never compressed data: it becomes a zero cluster, except that a
 *       cluster the snapshot reports entirely as zero or hole stays unallocated when the target has no
 *       backing file (it reads as zeros already; the uncompressed path does the same). With a backing
 *       file it is always a zero cluster, which hides the previous backup's data.</li>
 *   <li>A cluster compression does not shrink is stored as a normal cluster (the engine's choice, as
 *       QEMU's).</li>
 *   <li>Work goes in chunks of {@code chunkBytes} (whole snapshot clusters), one copier per push worker
 *       thread ({@link PushBackupJob#copyParallel}); after a chunk is written its range is discarded on
 *       the snapshot (copies freed, no further copies).</li>
 * </ul>
 * Memory: one chunk buffer and one flag per target cluster of a chunk.
 */
final class CompressedCopy implements PushBackupJob.ChunkCopier, PushBackupJob.RangeVisitor {
    private final SnapshotView view;
    private final Qcow2Image out;
    private final boolean hasBacking;
    private final int targetClusterSize;
    private final int chunkBytes;
    private final ByteBuffer buf;
    private final List<Extent> extents = new ArrayList<>();
    /** The chunk being filled: its start and which target clusters got data. */
    private long chunkStart;
    private boolean[] chunkData;

    /**
     * @param view       the snapshot to read
     * @param out        the new target, opened writable
     * @param hasBacking the target has a backing file (zero clusters must hide it)
     * @throws IllegalArgumentException when the copy granularity is not a multiple of the target's
     *         cluster size
     */
    CompressedCopy(SnapshotView view, Qcow2Image out, boolean hasBacking) {
        this.view = view;
        this.out = out;
        this.hasBacking = hasBacking;
        this.targetClusterSize = out.clusterSize();
        if (view.clusterSize() % targetClusterSize != 0) {
            throw new IllegalArgumentException("copy granularity: " + view.clusterSize() + " (expected: a "
                    + "multiple of the target's cluster size " + targetClusterSize + ")");
        }
        this.chunkBytes = Math.max(PushBackupJob.CHUNK_BYTES, view.clusterSize());
        this.buf = ByteBuffer.allocate(chunkBytes);
    }

    /** Writes the target clusters of [start, stop): whole clusters, the last one maybe cut by the disk end. */
    @Override
    public void copyChunk(long start, long stop) throws IOException {
        int clusters = (int) ((stop - start + targetClusterSize - 1) / targetClusterSize);
        boolean[] data = new boolean[clusters];
        fill(start, stop, data);
        for (int k = 0; k < clusters; k++) {
            if (!data[k] && !hasBacking) {
                continue;   // the snapshot says zeros; the new target reads as zeros there already
            }
            int from = k * targetClusterSize;
            int to = (int) Math.min(stop - start, from + (long) targetClusterSize);
            ByteBuffer cluster = buf.duplicate().position(from).limit(to).slice();
            long guestOffset = start + from;
            if (Zeros.isZero(cluster)) {
                out.writeZeroes(guestOffset, to - from, 0);
            } else {
                out.writeCompressed(guestOffset, cluster);
            }
        }
    }

    /**
     * Fills the buffer with [start, stop) of the snapshot: zeros where block status says so (no read),
     * the snapshot's bytes elsewhere; flags the target clusters that got data.
     */
    private void fill(long start, long stop, boolean[] data) throws IOException {
        chunkStart = start;
        chunkData = data;
        PushBackupJob.walk(view, start, stop, extents, this);
    }

    @Override
    public void zeros(long a, long b) {
        Arrays.fill(buf.array(), (int) (a - chunkStart), (int) (b - chunkStart), (byte) 0);
    }

    @Override
    public void data(long a, long b) throws IOException {
        ByteBuffer dst = buf.duplicate().position((int) (a - chunkStart)).limit((int) (b - chunkStart));
        view.read(a, dst);
        for (long k = (a - chunkStart) / targetClusterSize; k <= (b - 1 - chunkStart) / targetClusterSize; k++) {
            chunkData[(int) k] = true;
        }
    }
}
