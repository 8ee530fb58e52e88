package dev.shear.bitmap;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * What {@link PersistentBitmaps#store} needs from the qcow2 write engine to store bitmaps the way
 * QEMU does at close (dirty-bitmaps.md §4.3, §10 pitfalls 3, 4, 8). The engine implements it over
 * its cluster allocator and header writer; this module never touches refcounts or the header itself.
 *
 * <p>Order of calls made by {@code store} (each step durable before the next depends on it):
 * <pre>
 * allocate + write   data clusters of every bitmap, then each bitmap table (new clusters only)
 * flush              data and tables on disk before anything points at them
 * allocate + write   the new directory (new clusters)
 * commitDirectory    ONE header write: extension (count, size, offset) + autoclear bit 0; flush
 * free               old directory, old tables, old data clusters (never those of carried-over
 *                    inconsistent bitmaps); a crash before this only leaks clusters
 * </pre>
 * Contract for implementers: thread confinement is the caller's (store runs under the engine's
 * metadata write lock, with guest writes quiesced, e.g. at close or under the write lock for a
 * checkpoint); allocations are refcount 1 and never overlap live metadata.
 */
public interface BitmapStorage {

    /** The image, for messages. */
    String resource();

    /** The image's cluster_bits. */
    int clusterBits();

    /** The virtual disk size every stored bitmap must cover. */
    long imageSize();

    /**
     * Allocates {@code clusters} contiguous host clusters with refcount 1 (refcount blocks updated
     * in the engine's write order) and returns the first one's offset: cluster-aligned, non-zero.
     */
    long allocate(int clusters) throws IOException;

    /** Writes {@code data} (at most the allocated length) at {@code hostOffset}; not yet durable. */
    void write(long hostOffset, ByteBuffer data) throws IOException;

    /** Makes every earlier write and allocation durable (refcounts included). */
    void flush() throws IOException;

    /**
     * The commit point: in a single header write, point the bitmaps extension at the new directory
     * and set autoclear bit 0, then flush. With {@code nbBitmaps == 0} remove the extension instead
     * and clear autoclear bit 0 (QEMU does the same when the last bitmap goes).
     */
    void commitDirectory(int nbBitmaps, long directoryOffset, long directorySize) throws IOException;

    /** Drops one reference from each of {@code clusters} host clusters starting at {@code hostOffset}. */
    void free(long hostOffset, int clusters) throws IOException;

    /** Reads existing metadata (old tables, to find the data clusters to free). */
    void read(long hostOffset, ByteBuffer dst) throws IOException;
}
