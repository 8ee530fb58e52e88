package dev.shear.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * The metadata-level write API of a writable {@link Qcow2Image}, for engines that keep their own
 * structures inside the image file (persistent bitmaps now; internal snapshots and compressed writes
 * later). Obtained from {@link Qcow2Image#allocator()}.
 *
 * <p>Contract (qcow2-format.md §10): clusters come back with refcount 1, durable before any header or
 * table the caller writes afterwards through {@link #updateHeader} or {@link #flush}; a cluster the
 * caller stops referencing is given back with {@link #freeClusters} <em>after</em> the reference is
 * gone from whatever points at it — the refcount drops only once that change is durable (the next
 * flush), so a crash leaks at most. All methods are thread-safe (they take the image's metadata lock).
 */
public interface Qcow2Allocator {

    /** Cluster size of the image in bytes. */
    int clusterSize();

    /** The header as it is now (what the next header write starts from). */
    Qcow2Header header();

    /** Allocates {@code count} contiguous host clusters (refcount 1) and returns the first's offset. */
    long allocateClusters(int count) throws IOException;

    /**
     * Writes {@code data} at host {@code hostOffset} (cluster-aligned, inside clusters the caller
     * allocated). Refused with CORRUPT_IMAGE if the range overlaps qcow2 metadata (header, L1/L2 tables,
     * refcount structures, snapshot table).
     */
    void writeCluster(long hostOffset, ByteBuffer data) throws IOException;

    /** Drops one reference to each cluster of [hostOffset, hostOffset + length), deferred to the next flush. */
    void freeClusters(long hostOffset, long length) throws IOException;

    /** The current refcount of the host cluster at {@code hostOffset}. */
    long refcount(long hostOffset) throws IOException;

    /**
     * Rewrites cluster 0 with {@code extensions} (file order; the feature table and backing format are
     * the caller's to keep) and {@code autoclearFeatures}, after flushing every earlier change (so the
     * header never points at something not yet durable), then syncs.
     */
    void updateHeader(List<HeaderExtension> extensions, long autoclearFeatures) throws IOException;

    /**
     * Autoclear bits the caller keeps consistent from now on, so that the first write does not clear
     * them (by default every autoclear bit, including bit 0 "bitmaps", is cleared before the first
     * write). Call before the first write.
     */
    void maintainAutoclear(long bits);

    /** Makes everything above durable in the refcount -> tables -> header order. */
    void flush() throws IOException;
}
