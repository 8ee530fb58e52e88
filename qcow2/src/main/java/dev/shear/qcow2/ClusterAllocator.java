package dev.shear.qcow2;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.function.LongConsumer;

/**
 * Host cluster allocation and the refcount structure of a writable image (qcow2-format.md §5, §10;
 * QEMU qcow2-refcount.c {@code alloc_clusters_noref}, {@code update_refcount},
 * {@code alloc_refcount_block}).
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>The refcount table lives in memory ({@code table}); refcount blocks live in their own
 *       {@link MetadataCache}. Every change is made in memory; the disk is updated only by
 *       {@link #flush}: dirty blocks, fsync, then (the cache's after-flush hook) the table clusters
 *       that changed, or the whole table and the header when the table moved, each followed by an
 *       fsync. So a block is durable before the table entry that points at it, and a new table is
 *       durable before the header that points at it.</li>
 *   <li><b>Allocation</b> ({@link #allocate}): first fit from {@code freeClusterIndex} over clusters
 *       whose refcount is 0 (a cluster whose refcount block does not exist yet has refcount 0, as does
 *       everything past the end of the file), then +1 on each. Chosen clusters are <em>reserved</em>
 *       while their refcounts are raised, so that a refcount block or a grown table allocated on the
 *       way never lands on them (QEMU retries with -EAGAIN instead).</li>
 *   <li><b>Refcount blocks describe themselves</b> when they can: a new block is placed on the first
 *       free cluster, which is usually inside the range the block covers, and its own refcount is then
 *       set in itself. <b>Table growth</b> allocates a new, larger contiguous table (covering its own
 *       clusters), copies the entries, and frees the old table only after the header switch is
 *       durable.</li>
 *   <li><b>Frees are deferred</b> ({@link #freeLater}): a reference is removed from an L2/L1 table in
 *       memory, and the refcount decrement waits in {@code pendingFrees} until the flush has made the
 *       table change durable ({@link #applyPendingFrees}, called by the flush after L2 and L1). So a
 *       refcount never drops below the references on disk, and a freed cluster is never reused (and
 *       overwritten) while a durable table still maps it. Until then the space is simply not reusable.</li>
 *   <li>Refcount increments are in memory before the L2 entry that uses the cluster, and the L2 cache
 *       depends on this cache (set by {@link MetadataWriter}), so they are durable before it.</li>
 *   <li>Byte-granular compressed allocation (QEMU's free byte offset) can be added on top of
 *       {@link #allocate} and {@link #updateRefcount}: refcounts are per host cluster touched.</li>
 * </ul>
 *
 * <p>Thread safety: every method runs under the image's metadata write lock (the caller's); the
 * fields below are guarded by it.
 */
final class ClusterAllocator {
    /** Called after the table moved and was written: the header must point at it (then fsync). */
    interface TableMoveListener {
        void reftableMoved(long tableOffset, int tableClusters) throws IOException;
    }

    private final ImageFile file;
    private final String resource;
    private final int clusterBits;
    private final long clusterSize;
    private final int refcountOrder;
    private final int blockBits;                   // log2(entries per refcount block)
    private final long maxRefcount;                // unsigned
    private final MetadataCache blocks;
    private final OverlapChecker overlap;
    private final TableMoveListener moveListener;
    private LongConsumer freedListener = c -> { };

    private long[] table;                          // guarded by the metadata write lock
    private long tableOffset;                      // guarded by the metadata write lock
    private int tableClusters;                     // guarded by the metadata write lock
    private boolean tableMoved;                    // guarded by the metadata write lock
    private final BitSet dirtyTableClusters = new BitSet();   // guarded by the metadata write lock
    private long freeClusterIndex;                 // guarded by the metadata write lock
    private final List<long[]> pendingFrees = new ArrayList<>();   // {offset, length}; metadata lock
    private final List<long[]> reserved = new ArrayList<>();       // {cluster, count}; metadata lock
    private long freeByteOffset;                   // next compressed byte, 0 = none; metadata write lock

    ClusterAllocator(ImageFile file, String resource, Qcow2Header header, RefcountTable table,
                     MetadataCache blocks, OverlapChecker overlap, TableMoveListener moveListener) {
        this.file = file;
        this.resource = resource;
        this.clusterBits = header.clusterBits();
        this.clusterSize = 1L << clusterBits;
        this.refcountOrder = header.refcountOrder();
        this.blockBits = Refcounts.refcountBlockBits(clusterBits, refcountOrder);
        this.maxRefcount = Refcounts.maxRefcount(refcountOrder);
        this.blocks = blocks;
        this.overlap = overlap;
        this.moveListener = moveListener;
        this.table = table.entries();
        this.tableOffset = header.refcountTableOffset();
        this.tableClusters = header.refcountTableClusters();
        blocks.enableWriteBack(new MetadataCache.WriteBack() {
            @Override
            public void write(long hostOffset, ByteBuffer data) throws IOException {
                writeMetadata(hostOffset, data, "refcount block write");
            }

            @Override
            public void sync() throws IOException {
                syncFile();
            }
        }, this::writeTable);
        for (long e : this.table) {
            long off = e & RefcountTable.OFFSET_MASK;
            if (off != 0) {
                overlap.add(off, clusterSize, OverlapChecker.REFCOUNT_BLOCK);
            }
        }
        overlap.add(tableOffset, (long) tableClusters << clusterBits, OverlapChecker.REFCOUNT_TABLE);
    }

    /** Called with the offset of each cluster whose refcount drops to 0 (to drop cached tables). */
    void onFreed(LongConsumer listener) {
        this.freedListener = listener;
    }

    MetadataCache blockCache() {
        return blocks;
    }

    long tableOffset() {
        return tableOffset;
    }

    int tableClusters() {
        return tableClusters;
    }

    // ---- lookups ----

    /** The refcount of the host cluster at {@code hostOffset} (unsigned). */
    long refcount(long hostOffset) throws IOException {
        long cluster = hostOffset >>> clusterBits;
        long ti = cluster >>> blockBits;
        if (ti >= table.length) {
            return 0;
        }
        long off = table[(int) ti] & RefcountTable.OFFSET_MASK;
        if (off == 0) {
            return 0;
        }
        MetadataCache.Table b = blocks.get(off, this::loadBlock);
        return Refcounts.get(b.buffer(), refcountOrder, (int) (cluster & ((1L << blockBits) - 1)));
    }

    private boolean isFree(long cluster) throws IOException {
        for (long[] r : reserved) {
            if (cluster >= r[0] && cluster < r[0] + r[1]) {
                return false;
            }
        }
        return refcount(cluster << clusterBits) == 0;
    }

    /** First fit of {@code count} clusters with refcount 0 and not reserved. */
    private long findFree(long count) throws IOException {
        while (!isFree(freeClusterIndex)) {
            freeClusterIndex++;
        }
        long candidate = freeClusterIndex;
        long run = 0;
        long i = candidate;
        while (run < count) {
            if (isFree(i)) {
                run++;
            } else {
                candidate = i + 1;
                run = 0;
            }
            i++;
        }
        return candidate;
    }

    // ---- allocation ----

    /**
     * Allocates {@code count} contiguous host clusters with refcount 1 (in memory; durable with the next
     * refcount flush, which the L2 cache's dependency forces before any table maps them).
     *
     * @return the host offset of the first cluster
     */
    long allocate(long count) throws IOException {
        if (count <= 0) {
            throw new IllegalArgumentException("count: " + count + " (expected: > 0)");
        }
        long start = findFree(count);
        if (((start + count) << clusterBits) >>> clusterBits != start + count
                || ((start + count) << clusterBits) > L2Entry.OFFSET_MASK) {
            throw new BlockException(BlockErrorKind.NO_SPACE, resource, -1,
                    "host offset: past 2^56 (expected: room for " + count + " more clusters)");
        }
        long[] r = {start, count};
        reserved.add(r);
        try {
            updateRefcount(start << clusterBits, count << clusterBits, 1);
        } finally {
            reserved.remove(r);
        }
        return start << clusterBits;
    }

    /**
     * Adds {@code delta} to the refcount of every cluster that [hostOffset, hostOffset + length)
     * touches (QEMU update_refcount). Increments create refcount blocks and grow the table as needed;
     * a decrement below 0 or an increment past the maximum is refused with CORRUPT_IMAGE/IO before
     * anything changes for that cluster. For the snapshot engineer this is the primitive behind
     * "increment the refcount of every cluster reachable from an L1 table".
     */
    void updateRefcount(long hostOffset, long length, long delta) throws IOException {
        if (length <= 0) {
            return;
        }
        long first = hostOffset >>> clusterBits;
        long last = (hostOffset + length - 1) >>> clusterBits;
        for (long c = first; c <= last; c++) {
            MetadataCache.Table b = blockFor(c, delta > 0);
            ByteBuffer buf = b.buffer();
            int index = (int) (c & ((1L << blockBits) - 1));
            long v = Refcounts.get(buf, refcountOrder, index);
            long nv = v + delta;
            if (delta > 0 && (Long.compareUnsigned(nv, v) < 0 || Long.compareUnsigned(nv, maxRefcount) > 0)) {
                throw new BlockException(BlockErrorKind.IO, resource, c << clusterBits, String.format(
                        "refcount of cluster 0x%x: %s + %d (expected: <= %s, the refcount_bits maximum)",
                        c << clusterBits, Long.toUnsignedString(v), delta, Long.toUnsignedString(maxRefcount)));
            }
            if (delta < 0 && Long.compareUnsigned(v, -delta) < 0) {
                throw BlockException.corrupt(resource, c << clusterBits,
                        "refcount of cluster 0x%x: %s - %d (expected: no underflow)", c << clusterBits,
                        Long.toUnsignedString(v), -delta);
            }
            Refcounts.set(buf, refcountOrder, index, nv);
            blocks.markDirty(b);
            if (nv == 0) {
                if (freeByteOffset != 0 && (freeByteOffset >>> clusterBits) == c) {
                    freeByteOffset = 0;   // the partly filled cluster is free now: never append into it again
                }
                freeClusterIndex = Math.min(freeClusterIndex, c);
                freedListener.accept(c << clusterBits);
            }
        }
    }

    /**
     * Allocates {@code length} bytes (1 .. cluster size) for compressed data, QEMU's
     * {@code qcow2_alloc_bytes}: from the free byte offset inside the last partly filled host cluster
     * when they fit, else in a new cluster, continuing over the boundary when the new cluster directly
     * follows the partial one. Every host cluster the range touches gets +1 (§6.4: the same clusters
     * as its 512-byte sector range).
     *
     * @return the host byte offset of the range
     */
    long allocateBytes(int length) throws IOException {
        if (length <= 0 || length > clusterSize) {
            throw new IllegalArgumentException("length: " + length + " (expected: 1.." + clusterSize + ")");
        }
        long off = freeByteOffset;
        if (off != 0 && Long.compareUnsigned(refcount(off), maxRefcount) >= 0) {
            off = 0;   // QEMU: a cluster at the refcount maximum takes no more compressed clusters
        }
        long freeInCluster = off == 0 ? 0 : clusterSize - (off & (clusterSize - 1));
        if (off == 0 || freeInCluster < length) {
            long fresh = allocate(1);   // refcount 1: the new cluster's share of the range
            long partialEnd = (off + clusterSize - 1) & -clusterSize;
            if (off != 0 && partialEnd == fresh) {
                updateRefcount(off, 1, 1);   // the range starts in the partial cluster and runs into fresh
            } else {
                off = fresh;
            }
        } else {
            updateRefcount(off, length, 1);
        }
        long next = off + length;
        freeByteOffset = (next & (clusterSize - 1)) == 0 ? 0 : next;
        return off;
    }

    /** The refcount block covering {@code cluster}, created (and the table grown) if {@code create}. */
    private MetadataCache.Table blockFor(long cluster, boolean create) throws IOException {
        long ti = cluster >>> blockBits;
        if (ti >= table.length) {
            if (!create) {
                throw BlockException.corrupt(resource, cluster << clusterBits,
                        "refcount of cluster 0x%x: no refcount table entry (expected: an allocated cluster)",
                        cluster << clusterBits);
            }
            growTable(ti + 1);
        }
        long off = table[(int) ti] & RefcountTable.OFFSET_MASK;
        if (off == 0) {
            if (!create) {
                throw BlockException.corrupt(resource, cluster << clusterBits,
                        "refcount of cluster 0x%x: no refcount block (expected: an allocated cluster)",
                        cluster << clusterBits);
            }
            off = allocateBlock((int) ti);
        }
        return blocks.get(off, this::loadBlock);
    }

    /** A new, zeroed refcount block for table index {@code ti}; counts itself (QEMU alloc_refcount_block). */
    private long allocateBlock(int ti) throws IOException {
        long cluster = findFree(1);
        long off = cluster << clusterBits;
        blocks.install(off, ByteBuffer.allocate((int) clusterSize));
        table[ti] = off;
        dirtyTableClusters.set(ti >>> (clusterBits - 3));
        overlap.add(off, clusterSize, OverlapChecker.REFCOUNT_BLOCK);
        long[] r = {cluster, 1};
        reserved.add(r);
        try {
            updateRefcount(off, clusterSize, 1);   // in itself when it covers itself, else in its own block
        } finally {
            reserved.remove(r);
        }
        return off;
    }

    /**
     * Replaces the table by a larger one with at least {@code minEntries} entries, placed on free
     * clusters it covers itself (QEMU qcow2_refcount_area, simplified: the new blocks come from the
     * ordinary allocation path).
     */
    private void growTable(long minEntries) throws IOException {
        long entriesPerCluster = clusterSize / 8;
        long want = Math.max(minEntries, (long) table.length * 2);
        long clusters = (want + entriesPerCluster - 1) / entriesPerCluster;
        long start;
        while (true) {
            if (clusters * clusterSize > Qcow2Limits.MAX_REFTABLE_BYTES) {
                throw new BlockException(BlockErrorKind.NO_SPACE, resource, -1, String.format(
                        "refcount table: %d clusters (expected: <= %d bytes, QEMU's limit)", clusters,
                        Qcow2Limits.MAX_REFTABLE_BYTES));
            }
            start = findFree(clusters);
            long needEntries = ((start + clusters - 1) >>> blockBits) + 1;
            if (needEntries <= clusters * entriesPerCluster) {
                break;
            }
            clusters = (Math.max(needEntries, want) + entriesPerCluster - 1) / entriesPerCluster;
        }
        long oldOffset = tableOffset;
        int oldClusters = tableClusters;
        table = Arrays.copyOf(table, (int) (clusters * entriesPerCluster));
        tableOffset = start << clusterBits;
        tableClusters = (int) clusters;
        tableMoved = true;
        overlap.add(tableOffset, clusters << clusterBits, OverlapChecker.REFCOUNT_TABLE);
        long[] r = {start, clusters};
        reserved.add(r);
        try {
            updateRefcount(tableOffset, clusters << clusterBits, 1);
        } finally {
            reserved.remove(r);
        }
        // The old table stays referenced by the header on disk until the flush switches it.
        freeLater(oldOffset, (long) oldClusters << clusterBits);
    }

    // ---- frees ----

    /**
     * Drops one reference to every cluster [hostOffset, hostOffset + length) touches, once the
     * removal of the reference from the tables is durable (at the end of the next flush).
     */
    void freeLater(long hostOffset, long length) {
        if (length > 0) {
            pendingFrees.add(new long[] {hostOffset, length});
        }
    }

    boolean hasPendingFrees() {
        return !pendingFrees.isEmpty();
    }

    /**
     * Applies the deferred decrements. On entry: every table change that removed those references is
     * durable (the flush wrote L2 tables and L1 and synced).
     */
    void applyPendingFrees() throws IOException {
        List<long[]> todo = new ArrayList<>(pendingFrees);
        pendingFrees.clear();
        for (long[] f : todo) {
            updateRefcount(f[0], f[1], -1);   // clusters reaching 0 go to the freed listener
        }
    }

    // ---- write-back ----

    boolean isDirty() {
        return tableMoved || !dirtyTableClusters.isEmpty() || blocks.hasDirty();
    }

    /** Dirty blocks, fsync, then the table (and header if it moved), fsync. */
    void flush() throws IOException {
        blocks.flush();   // calls writeTable after the blocks are durable
    }

    /** After-flush hook of the block cache. */
    private void writeTable() throws IOException {
        if (tableMoved) {
            ByteBuffer b = ByteBuffer.allocate(table.length * 8);
            b.asLongBuffer().put(table);
            writeMetadata(tableOffset, b, "refcount table write");
            syncFile();
            moveListener.reftableMoved(tableOffset, tableClusters);   // writes the header and syncs
            tableMoved = false;
            dirtyTableClusters.clear();
            return;
        }
        if (dirtyTableClusters.isEmpty()) {
            return;
        }
        int perCluster = (int) (clusterSize / 8);
        for (int i = dirtyTableClusters.nextSetBit(0); i >= 0; i = dirtyTableClusters.nextSetBit(i + 1)) {
            ByteBuffer b = ByteBuffer.allocate((int) clusterSize);
            b.asLongBuffer().put(table, i * perCluster, perCluster);
            writeMetadata(tableOffset + ((long) i << clusterBits), b, "refcount table write");
        }
        syncFile();
        dirtyTableClusters.clear();
    }

    private ByteBuffer loadBlock(long hostOffset) throws IOException {
        ByteBuffer b = ByteBuffer.allocate((int) clusterSize);
        try {
            file.read(hostOffset, b);
        } catch (IOException e) {
            throw BlockException.io(resource, hostOffset, "refcount block read", e);
        }
        return b.flip();
    }

    private void writeMetadata(long hostOffset, ByteBuffer data, String what) throws IOException {
        MetadataIo.write(file, resource, hostOffset, data, what);
    }

    private void syncFile() throws IOException {
        MetadataIo.sync(file, resource);
    }

    /** The whole in-memory table (tests, rebuild). */
    long[] tableEntries() {
        return table.clone();
    }
}
