package dev.shear.qcow2;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The mutable metadata of a writable image: header, active L1 table, L2 table cache, allocator; and
 * the one place that knows the order in which they reach the disk (qcow2-format.md §10).
 *
 * <h2>Ordering (what a crash may leave: leaks only)</h2>
 * <ol>
 *   <li>Refcount increments are made in the refcount block cache before the L2 entry that uses the
 *       cluster; the L2 cache <em>depends</em> on the refcount cache ({@link MetadataCache#setDependency}),
 *       so no L2 table reaches the disk before the refcounts it needs (skipped with lazy refcounts:
 *       the dirty bit is set first instead).</li>
 *   <li>Data (and copy-on-write data) written into a new cluster sets the L2 cache's fsync dependency:
 *       the data is durable before the L2 table that maps it.</li>
 *   <li>The L1 table is written only by {@link #flush}, after the L2 cache is flushed: an L1 entry never
 *       points at an L2 table that is not durable.</li>
 *   <li>Frees are deferred ({@link ClusterAllocator#freeLater}) until L2 and L1 are durable.</li>
 *   <li>The header is rewritten in one write of cluster 0, followed by an fsync.</li>
 * </ol>
 * {@link #flush}: fsync (data) -> refcount blocks, fsync -> refcount table (+ header if it moved),
 * fsync -> L2 tables, fsync -> L1, fsync -> deferred frees -> refcount blocks, fsync.
 *
 * <h2>Locking</h2>
 * {@code lock} is the image's metadata lock (see {@link Qcow2Image}): read side for lookups, write
 * side for every change here. Every field below that changes after construction is guarded by its
 * write side (and read under its read side).
 */
final class MetadataWriter implements Qcow2Allocator {
    private final ImageFile file;
    private final String resource;
    private final ReentrantReadWriteLock lock;
    private final int clusterBits;
    private final int clusterSize;
    private final boolean extendedL2;
    private final int l2Bits;
    private final int entryBytes;
    private final int version;
    private final long[] l1;                  // shared with ClusterMapper; guarded by lock
    private final BitSet dirtyL1Sectors = new BitSet();   // 512-byte sectors of L1 to write; guarded by lock
    private final MetadataCache l2Cache;
    private final ClusterAllocator alloc;
    private final OverlapChecker overlap;
    private final Corruption corruption;
    private final MetadataCache.Loader l2Loader;
    private final boolean lazyRefcounts;

    private Qcow2Header header;               // guarded by lock
    private boolean dirtyBitOnDisk;           // guarded by lock
    private long maintainedAutoclear;         // guarded by lock
    private volatile boolean firstWriteDone;  // written under lock
    private volatile long linkSeq;            // links of new data clusters; written under lock

    MetadataWriter(ImageFile file, String resource, ReentrantReadWriteLock lock, Qcow2Header header,
                   long[] l1, MetadataCache l2Cache, MetadataCache.Loader l2Loader, RefcountTable reftable,
                   long refcountCacheBytes, OverlapChecker overlap, Corruption corruption, boolean lazyRefcounts) {
        this.file = file;
        this.resource = resource;
        this.lock = lock;
        this.header = header;
        this.clusterBits = header.clusterBits();
        this.clusterSize = 1 << clusterBits;
        this.extendedL2 = header.hasExtendedL2();
        this.l2Bits = header.l2Bits();
        this.entryBytes = extendedL2 ? 16 : 8;
        this.version = header.version();
        this.l1 = l1;
        this.l2Cache = l2Cache;
        this.l2Loader = l2Loader;
        this.overlap = overlap;
        this.corruption = corruption;
        this.lazyRefcounts = lazyRefcounts;
        this.dirtyBitOnDisk = header.isDirty();
        MetadataCache blocks = new MetadataCache(resource, refcountCacheBytes);
        this.alloc = new ClusterAllocator(file, resource, header, reftable, blocks, overlap, this::reftableMoved);
        alloc.onFreed(off -> {
            overlap.remove(off);
            l2Cache.discard(off);
        });
        l2Cache.enableWriteBack(new MetadataCache.WriteBack() {
            @Override
            public void write(long hostOffset, ByteBuffer data) throws IOException {
                String hit = null;
                if (hostOffset == 0) {
                    hit = "L2 table write to the header cluster";
                }
                if (hit != null) {
                    throw corruption.signal(hostOffset, hit);
                }
                writeMetadata(hostOffset, data, "L2 table write");
            }

            @Override
            public void sync() throws IOException {
                syncFile();
            }
        }, null);
        corruption.setMarker(this::markCorruptOnDisk);
    }

    ClusterAllocator allocatorInternal() {
        return alloc;
    }

    boolean lazyRefcounts() {
        return lazyRefcounts;
    }

    // ---- for Qcow2SnapshotEngine (callers hold the write lock) ----

    /** The active L1 table, live (shared with the mapper); change entries only under the write lock. */
    long[] activeL1() {
        return l1;
    }

    /** Reads {@code dst.remaining()} bytes of metadata at {@code hostOffset} (a snapshot's L1 table). */
    void readMetadata(long hostOffset, ByteBuffer dst) throws IOException {
        try {
            file.read(hostOffset, dst);
        } catch (IOException e) {
            throw BlockException.io(resource, hostOffset, "metadata read", e);
        }
    }

    /** Every L1 entry is written at the next flush. */
    void markL1Dirty() {
        dirtyL1Sectors.set(0, (l1.length + 63) / 64);
    }

    /** An L2 table (active or a snapshot's) through the shared cache. */
    MetadataCache.Table loadL2(long l2Offset) throws IOException {
        return l2Cache.get(l2Offset, l2Loader);
    }

    /** {@code t} was changed in place: written after the refcount blocks at the next flush. */
    void markL2Dirty(MetadataCache.Table t) throws IOException {
        l2Cache.markDirty(t);
        if (!lazyRefcounts) {
            l2Cache.setDependency(alloc.blockCache());
        }
    }

    // ---- before the first write ----

    /**
     * Called at the start of every mutating operation: refuses writes to a corrupt image, and before
     * the first one clears the autoclear bits nobody maintains (unknown bits, and bit 0 "bitmaps" unless
     * the bitmap engine said it keeps them: the one place that decides it) and, with lazy refcounts,
     * sets the dirty bit; the header is durable before anything else is written.
     */
    void beginWrite() throws IOException {
        corruption.checkWritable();
        if (firstWriteDone) {
            return;
        }
        lock.writeLock().lock();
        try {
            if (firstWriteDone) {
                return;
            }
            Qcow2Header h = header;
            if (h.version() >= 3) {
                long autoclear = h.autoclearFeatures() & maintainedAutoclear;
                long incompat = lazyRefcounts ? h.incompatibleFeatures() | FeatureBits.INCOMPAT_DIRTY
                        : h.incompatibleFeatures();
                if (autoclear != h.autoclearFeatures() || incompat != h.incompatibleFeatures()) {
                    writeHeader(h.withAutoclearFeatures(autoclear).withIncompatibleFeatures(incompat));
                }
                dirtyBitOnDisk = (incompat & FeatureBits.INCOMPAT_DIRTY) != 0;
            }
            firstWriteDone = true;
        } finally {
            lock.writeLock().unlock();
        }
    }

    // ---- L2 entries ----

    /** One L2 entry of the active image: the 64-bit entry and, with extended L2, its subcluster bitmap. */
    record Slot(long entry, long bitmap, String problem) {
    }

    /**
     * The L2 entry of guest cluster {@code guestCluster}; (0, 0) when its L2 table is not allocated.
     * {@code problem} is non-null for a malformed entry (the caller signals corruption outside the lock).
     * Takes the read lock.
     */
    Slot readSlot(long guestCluster) throws IOException {
        lock.readLock().lock();
        try {
            int l1Index = (int) (guestCluster >>> l2Bits);
            long l1e = l1[l1Index];
            long l2Offset = L1Entry.offset(l1e);
            if (l2Offset == 0) {
                return new Slot(0, 0, L1Entry.problem(l1e, clusterBits));
            }
            String l1Problem = L1Entry.problem(l1e, clusterBits);
            if (l1Problem != null) {
                return new Slot(0, 0, "L1 entry " + l1Index + ": " + l1Problem);
            }
            MetadataCache.Table t = l2Cache.get(l2Offset, l2Loader);
            int at = (int) (guestCluster & ((1L << l2Bits) - 1)) * entryBytes;
            long e = t.getLong(at);
            long b = extendedL2 ? t.getLong(at + 8) : 0;
            String p = L2Entry.problem(e, b, clusterBits, extendedL2, version);
            return new Slot(e, b, p == null ? null : String.format("L2 entry for guest offset 0x%x in table 0x%x: %s",
                    guestCluster << clusterBits, l2Offset, p));
        } finally {
            lock.readLock().unlock();
        }
    }

    /**
     * Sets the L2 entry of {@code guestCluster} (allocating or copying its L2 table first), records
     * the ordering it needs, and frees the host range {@code freeOffset/freeLength} (the replaced
     * reference; length 0 for none) once the change is durable.
     *
     * <p>On entry: the caller holds the write lock and the guest cluster's lock; any cluster the entry
     * points at has its refcount raised (in memory) already; {@code newData} says whether data was
     * just written into a new cluster (fsync dependency).
     */
    void setSlot(long guestCluster, long entry, long bitmap, boolean newData, long freeOffset, long freeLength)
            throws IOException {
        int l1Index = (int) (guestCluster >>> l2Bits);
        MetadataCache.Table t = l2ForUpdate(l1Index);
        int at = (int) (guestCluster & ((1L << l2Bits) - 1)) * entryBytes;
        t.putLong(at, entry);
        if (extendedL2) {
            t.putLong(at + 8, bitmap);
        }
        l2Cache.markDirty(t);
        if (!lazyRefcounts) {
            l2Cache.setDependency(alloc.blockCache());
        }
        if (newData) {
            l2Cache.dependsOnFsync();
            linkSeq++;
        }
        alloc.freeLater(freeOffset, freeLength);
        afterChange();
    }

    /**
     * The active L2 table of L1 index {@code l1Index}, writable: allocated (zeroed) if the L1 entry is
     * empty, copied to a new cluster if it is shared with a snapshot (L1 copied flag clear; QEMU
     * l2_allocate). Caller holds the write lock.
     */
    private MetadataCache.Table l2ForUpdate(int l1Index) throws IOException {
        long l1e = l1[l1Index];
        long off = L1Entry.offset(l1e);
        if (off != 0 && L1Entry.isCopied(l1e)) {
            return l2Cache.get(off, l2Loader);
        }
        long fresh = alloc.allocate(1);
        ByteBuffer content = ByteBuffer.allocate(clusterSize);
        if (off != 0) {
            content.put(l2Cache.get(off, l2Loader).buffer()).clear();
            alloc.freeLater(off, clusterSize);   // the snapshot keeps its reference
        }
        MetadataCache.Table t = l2Cache.install(fresh, content);
        overlap.add(fresh, clusterSize, OverlapChecker.ACTIVE_L2);
        l1[l1Index] = L1Entry.of(fresh, true);
        dirtyL1Sectors.set(l1Index >>> 6);
        if (!lazyRefcounts) {
            l2Cache.setDependency(alloc.blockCache());
        }
        return t;
    }

    /** Allocates {@code count} clusters for guest data; caller holds the write lock. */
    long allocateData(long count) throws IOException {
        long off = alloc.allocate(count);
        afterChange();
        return off;
    }

    private void afterChange() throws IOException {
        l2Cache.writeBackIfOverCapacity();
        alloc.blockCache().writeBackIfOverCapacity();
    }

    // ---- flush, header ----

    /**
     * Makes every completed change durable: data, then refcounts, L2 tables, L1, header, then the
     * deferred frees (see the class notes). The data fsync runs without the lock; metadata write-back
     * under the write lock.
     */
    @Override
    public void flush() throws IOException {
        long seq = linkSeq;
        syncFile();
        lock.writeLock().lock();
        try {
            if (linkSeq == seq) {
                l2Cache.clearFsyncDependency();   // the sync above covered every linked data write
            }
            flushLocked();
        } finally {
            lock.writeLock().unlock();
        }
    }

    private void flushLocked() throws IOException {
        alloc.flush();
        l2Cache.flush();
        if (!dirtyL1Sectors.isEmpty()) {
            long l1Offset = header.l1TableOffset();
            for (int s = dirtyL1Sectors.nextSetBit(0); s >= 0; s = dirtyL1Sectors.nextSetBit(s + 1)) {
                int first = s * 64;
                int n = Math.min(64, l1.length - first);
                ByteBuffer b = ByteBuffer.allocate(n * 8);
                b.asLongBuffer().put(l1, first, n);
                writeMetadata(l1Offset + first * 8L, b, "L1 table write");
            }
            syncFile();
            dirtyL1Sectors.clear();
        }
        if (alloc.hasPendingFrees()) {
            alloc.applyPendingFrees();
            alloc.flush();
        }
    }

    /**
     * Flushes, then clears the dirty bit of a lazy-refcount image (clean close; QEMU qcow2_mark_clean).
     */
    void close() throws IOException {
        flush();
        lock.writeLock().lock();
        try {
            if (dirtyBitOnDisk && lazyRefcounts) {
                long bits = header.incompatibleFeatures() & ~FeatureBits.INCOMPAT_DIRTY;
                writeHeader(header.withIncompatibleFeatures(bits));
                dirtyBitOnDisk = false;
            }
        } finally {
            lock.writeLock().unlock();
        }
    }

    /** Rewrites cluster 0 with {@code h} in one write and syncs. Caller holds the write lock. */
    void writeHeader(Qcow2Header h) throws IOException {
        ByteBuffer b = h.encode(clusterSize);
        writeMetadata(0, b, "header write");
        syncFile();
        header = h;
    }

    private void reftableMoved(long tableOffset, int tableClusters) throws IOException {
        Qcow2Header h = header;
        writeHeader(new Qcow2Header(h.version(), h.backingFileOffset(), h.backingFileSize(), h.clusterBits(),
                h.size(), h.cryptMethod(), h.l1Size(), h.l1TableOffset(), tableOffset, tableClusters,
                h.nbSnapshots(), h.snapshotsOffset(), h.incompatibleFeatures(), h.compatibleFeatures(),
                h.autoclearFeatures(), h.refcountOrder(), h.headerLength(), h.compressionType(),
                h.unknownHeaderFields(), h.extensions(), h.backingFileName()));
    }

    private void markCorruptOnDisk() throws IOException {
        if (header.version() < 3) {
            return;   // v2 has no corrupt bit
        }
        lock.writeLock().lock();
        try {
            long bits = header.incompatibleFeatures() | FeatureBits.INCOMPAT_CORRUPT;
            writeHeader(header.withIncompatibleFeatures(bits));
        } finally {
            lock.writeLock().unlock();
        }
    }

    // ---- Qcow2Allocator ----

    @Override
    public int clusterSize() {
        return clusterSize;
    }

    @Override
    public Qcow2Header header() {
        lock.readLock().lock();
        try {
            return header;
        } finally {
            lock.readLock().unlock();
        }
    }

    @Override
    public long allocateClusters(int count) throws IOException {
        beginWrite();
        lock.writeLock().lock();
        try {
            return allocateData(count);
        } finally {
            lock.writeLock().unlock();
        }
    }

    @Override
    public void writeCluster(long hostOffset, ByteBuffer data) throws IOException {
        corruption.checkWritable();
        if ((hostOffset & (clusterSize - 1)) != 0) {
            throw BlockException.invalid(resource, hostOffset, "host offset: 0x%x (expected: cluster-aligned)",
                    hostOffset);
        }
        checkOverlap(hostOffset, data.remaining());
        writeData(hostOffset, data);
    }

    @Override
    public void freeClusters(long hostOffset, long length) throws IOException {
        lock.writeLock().lock();
        try {
            alloc.freeLater(hostOffset, length);
        } finally {
            lock.writeLock().unlock();
        }
    }

    @Override
    public long refcount(long hostOffset) throws IOException {
        lock.writeLock().lock();   // refcount blocks load through the cache under the write lock
        try {
            return alloc.refcount(hostOffset);
        } finally {
            lock.writeLock().unlock();
        }
    }

    @Override
    public void updateHeader(List<HeaderExtension> extensions, long autoclearFeatures) throws IOException {
        beginWrite();
        flush();
        lock.writeLock().lock();
        try {
            writeHeader(header.withExtensions(extensions).withAutoclearFeatures(autoclearFeatures));
        } finally {
            lock.writeLock().unlock();
        }
    }

    @Override
    public void maintainAutoclear(long bits) {
        lock.writeLock().lock();
        try {
            maintainedAutoclear = bits;
        } finally {
            lock.writeLock().unlock();
        }
    }

    // ---- I/O helpers ----

    /**
     * Refuses (and signals corruption for) a data write over metadata. Must be called without the
     * read lock held.
     */
    void checkOverlap(long hostOffset, long length) throws BlockException {
        String hit = overlap.check(hostOffset, length);
        if (hit != null) {
            throw corruption.signal(hostOffset, hit);
        }
    }

    void writeData(long hostOffset, ByteBuffer data) throws IOException {
        try {
            file.write(hostOffset, data);
        } catch (IOException e) {
            throw BlockException.io(resource, hostOffset, "data write", e);
        }
    }

    private void writeMetadata(long hostOffset, ByteBuffer data, String what) throws IOException {
        MetadataIo.write(file, resource, hostOffset, data, what);
    }

    private void syncFile() throws IOException {
        MetadataIo.sync(file, resource);
    }

    Corruption corruption() {
        return corruption;
    }

    ReentrantReadWriteLock lock() {
        return lock;
    }

    BlockException corrupt(long offset, String detail) {
        return corruption.signal(offset, detail);
    }

    static BlockException noSpace(String resource, String what) {
        return new BlockException(BlockErrorKind.NO_SPACE, resource, -1, what);
    }
}
