package dev.shear.qcow2.compress;

import java.nio.ByteBuffer;
import java.util.zip.DataFormatException;

/**
 * Decompresses and compresses one qcow2 cluster (qcow2-format.md §7).
 *
 * <p>The compressed bytes a reader has are {@code csize} bytes from the L2 entry: the compressed
 * stream rounded up to whole 512-byte sectors, so they usually end with bytes of the next compressed
 * cluster or garbage. A codec therefore stops as soon as it has produced exactly one cluster and
 * ignores whatever input is left (qcow2-format.md §15 pitfall 2); it fails when the input runs out, or
 * the stream ends, before the cluster is full.
 *
 * <p>Implementations are thread-safe: decoder state is kept per thread and reset for each cluster.
 */
public interface ClusterCodec {

    CompressionType type();

    /**
     * Decompresses one cluster.
     *
     * <p>On entry: {@code src} holds the compressed bytes between position and limit (trailing bytes
     * allowed); {@code dst} has exactly {@code cluster_size} bytes remaining.
     * On exit: {@code dst} is full (position = limit); {@code src}'s position is unspecified.
     *
     * @throws DataFormatException if the data is not a valid stream of this type, or ends before
     *         {@code dst} is full; the message says which (the caller adds image and offsets)
     */
    void decompress(ByteBuffer src, ByteBuffer dst) throws DataFormatException;

    /**
     * Compresses one cluster for writing, QEMU's rule (qcow2-format.md §7 writer rules): the result must
     * be smaller than the cluster, else the cluster is stored uncompressed.
     *
     * <p>On entry: {@code src} holds one cluster. On success {@code src} is consumed and {@code dst}'s
     * position advanced by the result; on -1 {@code dst}'s content is unspecified.
     *
     * @return the number of bytes written to {@code dst}, or -1 if the result does not fit in
     *         {@code dst.remaining()} (then the caller writes a normal cluster)
     */
    int compress(ByteBuffer src, ByteBuffer dst);
}
