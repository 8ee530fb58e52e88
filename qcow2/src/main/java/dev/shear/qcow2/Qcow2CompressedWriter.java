package dev.shear.qcow2;

import dev.shear.block.BlockException;
import dev.shear.qcow2.compress.ClusterCodec;
import dev.shear.qcow2.compress.CompressionType;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Writes whole guest clusters compressed, as {@code qemu-img convert -c} and backup targets do
 * (qcow2-format.md §6.4, §7; QEMU block/qcow2.c {@code qcow2_co_pwritev_compressed_task},
 * qcow2-cluster.c {@code qcow2_alloc_compressed_cluster_offset}, qcow2-refcount.c
 * {@code qcow2_alloc_bytes}).
 *
 * <h2>One cluster</h2>
 * <ol>
 *   <li>Compress into a buffer of {@code cluster_size - 1} bytes with the image's compression type. If
 *       the result does not fit (compression gains nothing), write the cluster as a normal cluster
 *       through the ordinary write path instead (QEMU does the same).</li>
 *   <li>Under the guest cluster's lock: allocate the compressed length with byte granularity
 *       ({@link ClusterAllocator#allocateBytes}: QEMU's free byte offset inside the last partly filled
 *       host cluster; +1 on every host cluster touched), write the bytes, then link the L2 entry
 *       {@code (1 << 62) | additional_sectors << x | offset} (never the copied flag; bitmap 0 with
 *       extended L2) and free the old mapping (data cluster, or the old compressed sector range) once
 *       the link is durable, exactly as the write engine frees.</li>
 * </ol>
 * The order is the write engine's: refcounts before the L2 entry (cache dependency), data fsynced
 * before the L2 table that maps it, frees after the tables. The last guest cluster of a disk whose
 * size is not a multiple of the cluster size is compressed padded with zeros (§7).
 *
 * <p>Thread safety: as {@link Qcow2Writer} (guest cluster lock, then the metadata write lock, briefly).
 */
final class Qcow2CompressedWriter {
    private final Qcow2Image image;
    private final Qcow2Writer writer;
    private final MetadataWriter meta;
    private final ClusterCodec codec;
    private final String resource;
    private final int clusterBits;
    private final int clusterSize;
    private final long size;

    Qcow2CompressedWriter(Qcow2Image image, Qcow2Writer writer, MetadataWriter meta, Qcow2Header header) {
        this.image = image;
        this.writer = writer;
        this.meta = meta;
        this.codec = CompressionType.fromHeader(header.compressionType()).codec();
        this.resource = image.name();
        this.clusterBits = header.clusterBits();
        this.clusterSize = 1 << clusterBits;
        this.size = header.size();
    }

    /**
     * Writes guest cluster at {@code guestClusterOffset} from {@code wholeCluster}.
     *
     * <p>On entry: {@code guestClusterOffset} is cluster-aligned and inside the disk;
     * {@code wholeCluster} holds cluster_size bytes, or for the last, partial cluster of the disk either
     * cluster_size bytes or exactly the bytes up to the end of the disk.
     * On exit: {@code wholeCluster} is consumed; the guest cluster reads back as its bytes.
     *
     * @return true if the cluster was stored compressed, false if as a normal cluster
     */
    boolean write(long guestClusterOffset, ByteBuffer wholeCluster) throws IOException {
        if ((guestClusterOffset & (clusterSize - 1)) != 0 || guestClusterOffset < 0 || guestClusterOffset >= size) {
            throw BlockException.invalid(resource, guestClusterOffset,
                    "compressed write offset: 0x%x (expected: cluster-aligned, below the disk size 0x%x)",
                    guestClusterOffset, size);
        }
        if ((meta.header().incompatibleFeatures() & FeatureBits.INCOMPAT_DATA_FILE) != 0) {
            throw BlockException.invalid(resource, -1, "compressed write: external data file "
                    + "(expected: compressed clusters only inside the image file, §7)");
        }
        int inDisk = (int) Math.min(clusterSize, size - guestClusterOffset);
        int n = wholeCluster.remaining();
        if (n != clusterSize && n != inDisk) {
            throw BlockException.invalid(resource, guestClusterOffset,
                    "compressed write length: %d (expected: %d%s)", n, clusterSize,
                    inDisk != clusterSize ? " or " + inDisk : "");
        }
        meta.beginWrite();
        ByteBuffer cluster = ByteBuffer.allocate(clusterSize);
        cluster.put(wholeCluster.duplicate()).clear();
        wholeCluster.position(wholeCluster.limit());
        ByteBuffer out = ByteBuffer.allocate(clusterSize - 1);
        int compressedLength = codec.compress(cluster.duplicate(), out);
        if (compressedLength < 0) {
            // QEMU: "if compression does not gain, write the cluster uncompressed"
            image.write(guestClusterOffset, cluster.limit(inDisk), 0);
            return false;
        }
        out.flip();
        long c = guestClusterOffset >>> clusterBits;
        ReentrantLock l = writer.lockCluster(c);
        try {
            MetadataWriter.Slot s = meta.readSlot(c);
            if (s.problem() != null) {
                throw meta.corrupt(guestClusterOffset, s.problem());
            }
            long host;
            meta.lock().writeLock().lock();
            try {
                host = meta.allocatorInternal().allocateBytes(compressedLength);
            } finally {
                meta.lock().writeLock().unlock();
            }
            long entry = L2Entry.compressed(host, compressedLength, clusterBits);
            meta.checkOverlap(host, compressedLength);
            meta.writeData(host, out);
            long[] old = hostRange(s.entry());
            meta.lock().writeLock().lock();
            try {
                meta.setSlot(c, entry, 0, true, old[0], old[1]);
            } finally {
                meta.lock().writeLock().unlock();
            }
        } finally {
            l.unlock();
        }
        return true;
    }

    /** The host range an entry holds a reference to: {offset, length}, length 0 for none. */
    private long[] hostRange(long e) {
        if (L2Entry.isCompressed(e)) {
            return new long[] {L2Entry.compressedRangeStart(e, clusterBits),
                L2Entry.compressedRangeLength(e, clusterBits)};
        }
        long host = L2Entry.offset(e);
        return host == 0 ? new long[2] : new long[] {host, clusterSize};
    }
}
