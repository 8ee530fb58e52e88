package dev.shear.fleece.scratch;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Where copy-before-write keeps the old contents of clusters while a snapshot lives (design.md §The
 * block graph): a map from cluster index to the cluster's bytes, with a capacity.
 *
 * <p>Implementations: {@link SpillStore} (compressed append-and-reuse file), a qcow2 scratch image
 * (later, with the write engine: cluster {@code i} at guest offset {@code i × clusterSize}, so it can
 * also be exported or inspected with qemu-img), and an in-memory map in the tests.
 *
 * <p>Concurrency contract: calls for <em>different</em> clusters may run concurrently from many
 * threads; calls for the <em>same</em> cluster never overlap and are ordered by the caller (the
 * snapshot's cluster locks: put and remove under the cluster's exclusive lock, get under its shared
 * lock). Implementations therefore guard only their shared structures (index, free space), not
 * per-cluster data.
 *
 * <p>Durability: none is promised or needed. A snapshot does not survive the process, so the scratch
 * is deleted on close and never synced; "copied" means readable by {@link #get}, which is what the
 * fleecing invariant requires.
 */
public interface ScratchTarget extends Closeable {

    /** For messages: the file path or a description. */
    String name();

    /**
     * Stores the old contents of cluster {@code clusterIndex}: {@code src.remaining()} bytes (a whole
     * cluster, shorter only for the device's last cluster), consuming {@code src}. Replaces an earlier
     * copy. Data that is all zeros may be recorded as such without storing it.
     *
     * @throws dev.shear.block.BlockException NO_SPACE when the capacity would be exceeded (nothing is
     *         stored), IO when the medium fails
     */
    void put(long clusterIndex, ByteBuffer src) throws IOException;

    /**
     * Reads {@code dst.remaining()} bytes of the stored cluster starting {@code offsetInCluster} bytes
     * into it, advancing {@code dst} to its limit.
     *
     * @throws dev.shear.block.BlockException IO when the cluster is not stored, or the medium or its
     *         contents are damaged
     */
    void get(long clusterIndex, int offsetInCluster, ByteBuffer dst) throws IOException;

    /**
     * True when the cluster is stored and known to read as zeros, from the index alone (no data is
     * read): block status of the snapshot reports it as zero.
     */
    boolean isZero(long clusterIndex);

    /** Forgets the cluster and frees its space; nothing happens when it is not stored. */
    void remove(long clusterIndex) throws IOException;

    /** Bytes of storage the stored clusters occupy now. */
    long usedBytes();

    /** The most bytes of storage this target will use, or {@link Long#MAX_VALUE}. */
    long capacityBytes();

    /** Number of clusters stored (zero clusters included). */
    long storedClusters();

    /** Releases everything and deletes what was created on disk. Idempotent. */
    @Override
    void close() throws IOException;
}
