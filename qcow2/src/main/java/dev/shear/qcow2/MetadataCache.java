package dev.shear.qcow2;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A byte-bounded LRU cache of one-cluster metadata tables (L2 tables, refcount blocks),
 * keyed by host offset (QEMU block/qcow2-cache.c; style.md §2).
 *
 * <h2>Design</h2>
 * <ul>
 *   <li>{@link #get} returns the cached table or loads it on a miss. The loader's I/O runs outside
 *       every lock: the first thread to miss installs a "loading" slot and reads the cluster; other
 *       threads wanting the same table wait for that slot, threads wanting other tables go on. There is
 *       no global lock around data or metadata I/O.</li>
 *   <li>{@code lock} guards only the LRU map and the counters; it is held for a few map operations,
 *       never across I/O or a loader call.</li>
 *   <li>Capacity is in bytes of table data. After each load, least recently used tables are evicted
 *       until the total fits; a table being loaded is never evicted, and the table just loaded stays
 *       even if it alone exceeds the capacity (so a tiny capacity degrades to "reload every time" and
 *       never fails).</li>
 *   <li>A failed load is not cached: the waiters get the error, the next {@code get} retries.</li>
 *   <li>Tables are immutable {@link Table}s (read-only, big-endian views); a reader keeps using a table
 *       it got even after it is evicted.</li>
 * </ul>
 *
 * <h2>Sizing</h2>
 * QEMU (since 3.1, Linux) sizes its L2 cache to cover the whole disk up to {@code l2-cache-size} =
 * 32 MiB (DEFAULT_L2_CACHE_MAX_SIZE: one 64 KiB L2 table maps 512 MiB, so 32 MiB cover 256 GiB) and
 * its refcount cache to 4 clusters. {@link #DEFAULT_CAPACITY_BYTES} follows the L2 default.
 *
 * <h2>Write side (qcow2-format.md §10; QEMU qcow2-cache.c)</h2>
 * <ul>
 *   <li>Tables are mutable in place, but only by a caller holding the image's metadata <em>write</em>
 *       lock; readers use tables only while holding its read lock, so they never see a torn entry.
 *       {@link #markDirty} records a change; {@link #install} adds a new table (a fresh L2 table or
 *       refcount block) that is dirty from the start.</li>
 *   <li>A dirty table is never evicted by a reader's {@link #get}; the writer calls
 *       {@link #writeBackIfOverCapacity} after its change, which writes dirty tables back (through
 *       {@link #flush}) before evicting.</li>
 *   <li><b>Ordering is a dependency here, not a convention in callers.</b>
 *       {@link #setDependency setDependency(other)}: before any dirty table of this cache is written,
 *       {@code other} is flushed (written and synced) — the L2 cache depends on the refcount cache so
 *       that a refcount increase is durable before an L2 entry points at the cluster (QEMU
 *       {@code qcow2_cache_set_dependency}, same rule: an existing dependency of either cache is
 *       flushed first, so there are never cycles). {@link #dependsOnFsync}: the next write-back is
 *       preceded by an fsync of the file, so that guest data (and copy-on-write data) written into a
 *       new cluster is durable before the table that maps it (QEMU
 *       {@code qcow2_cache_depends_on_flush}).</li>
 *   <li>{@link #flush} = dependency, fsync if needed, every dirty table in offset order, fsync, then the
 *       after-flush hook (the refcount cache writes the refcount table there: blocks before the table
 *       that points at them).</li>
 * </ul>
 * The write-side fields ({@code depends}, {@code dependsOnFsync}, the tables' dirty flags) are
 * guarded by the image's metadata write lock.
 *
 * <p>Lock order: a caller may hold image-level locks when calling {@link #get}; the cache takes only
 * its own {@code lock}, briefly, and calls nothing while holding it.
 */
final class MetadataCache {
    /** QEMU's default maximum L2 cache size on Linux. */
    static final long DEFAULT_CAPACITY_BYTES = 32L << 20;

    /** Loads one table; called without any cache lock held. */
    @FunctionalInterface
    interface Loader {
        /** Returns the {@code tableBytes} bytes of the table at {@code hostOffset}. */
        ByteBuffer load(long hostOffset) throws IOException;
    }

    /** Writes one table back and syncs the file: the write side's only I/O (QEMU bdrv_pwrite/flush). */
    interface WriteBack {
        void write(long hostOffset, ByteBuffer data) throws IOException;

        void sync() throws IOException;
    }

    /** Runs after the dirty tables of a flush are written and synced (the refcount table write). */
    @FunctionalInterface
    interface FlushHook {
        void afterFlush() throws IOException;
    }

    /**
     * A cached table: big-endian 64-bit entries over one cluster. Mutable only under the image's
     * metadata write lock ({@link #putLong}, {@link #buffer}); then {@link MetadataCache#markDirty}.
     */
    static final class Table {
        private final long hostOffset;
        private final ByteBuffer data;
        private volatile boolean dirty;   // guarded by the image's metadata write lock (read by evict)

        Table(long hostOffset, ByteBuffer data) {
            this.hostOffset = hostOffset;
            this.data = data.duplicate().clear();
        }

        /** The 64-bit big-endian word at byte {@code byteOffset}; under the metadata write lock. */
        void putLong(int byteOffset, long value) {
            data.putLong(byteOffset, value);
        }

        /** The whole table for in-place edits (refcount blocks); under the metadata write lock. */
        ByteBuffer buffer() {
            return data.duplicate().clear();
        }

        boolean isDirty() {
            return dirty;
        }

        long hostOffset() {
            return hostOffset;
        }

        /** The 64-bit big-endian word at byte {@code byteOffset}. */
        long getLong(int byteOffset) {
            return data.getLong(byteOffset);
        }

        int sizeBytes() {
            return data.capacity();
        }
    }

    /** One map slot: loading until {@code table} or {@code failure} is set. */
    private static final class Slot {
        private Table table;          // guarded by this; set once
        private IOException failure;  // guarded by this; set once

        synchronized void complete(Table t) {
            table = t;
            notifyAll();
        }

        synchronized void fail(IOException e) {
            failure = e;
            notifyAll();
        }

        synchronized boolean isLoaded() {
            return table != null;
        }

        synchronized boolean isEvictable() {
            return table != null && !table.dirty;
        }

        synchronized Table loaded() {
            return table;
        }

        synchronized Table await() throws IOException {
            boolean interrupted = false;
            try {
                while (table == null && failure == null) {
                    try {
                        wait();
                    } catch (InterruptedException e) {
                        interrupted = true;
                    }
                }
            } finally {
                if (interrupted) {
                    Thread.currentThread().interrupt();
                }
            }
            if (failure != null) {
                throw rethrowable(failure);
            }
            return table;
        }

        synchronized long sizeBytes() {
            return table == null ? 0 : table.sizeBytes();
        }
    }

    private final String resource;
    private final long capacityBytes;
    private final Object lock = new Object();        // guards lru, usedBytes and the counters
    private final LinkedHashMap<Long, Slot> lru = new LinkedHashMap<>(64, 0.75f, true);  // guarded by lock
    private long usedBytes;                          // guarded by lock
    private long hits;                               // guarded by lock
    private long loads;                              // guarded by lock
    private long evictions;                          // guarded by lock
    private WriteBack writeBack;                     // null for a read-only cache; set once before use
    private FlushHook flushHook;                     // null or set once before use
    private MetadataCache depends;                   // guarded by the image's metadata write lock
    private boolean dependsOnFsync;                  // guarded by the image's metadata write lock

    /**
     * @param resource      the image, for messages
     * @param capacityBytes the most table bytes kept (&gt; 0)
     */
    MetadataCache(String resource, long capacityBytes) {
        if (capacityBytes <= 0) {
            throw new IllegalArgumentException("cache capacity: " + capacityBytes + " (expected: > 0)");
        }
        this.resource = resource;
        this.capacityBytes = capacityBytes;
    }

    /**
     * Returns the table at {@code hostOffset}, loading it with {@code loader} on a miss.
     *
     * <p>On entry: {@code hostOffset} was validated by the caller (aligned, inside the sane bound).
     * On exit: the table is cached (unless evicted by later loads) and counted as most recently used.
     */
    Table get(long hostOffset, Loader loader) throws IOException {
        Slot slot;
        boolean mine = false;
        synchronized (lock) {
            slot = lru.get(hostOffset);
            if (slot == null) {
                slot = new Slot();
                lru.put(hostOffset, slot);
                loads++;
                mine = true;
            } else {
                hits++;
            }
        }
        if (!mine) {
            return slot.await();
        }
        Table table;
        try {
            table = new Table(hostOffset, loader.load(hostOffset));
        } catch (IOException | RuntimeException e) {
            synchronized (lock) {
                lru.remove(hostOffset, slot);
            }
            IOException failure = e instanceof IOException io ? io
                    : new BlockException(BlockErrorKind.IO, resource, hostOffset, "metadata load: " + e, e);
            slot.fail(failure);
            throw e;
        }
        slot.complete(table);
        synchronized (lock) {
            usedBytes += table.sizeBytes();
            evict(slot);
        }
        return table;
    }

    /** Evicts least recently used loaded tables until the capacity holds, sparing {@code keep}. Holds lock. */
    private void evict(Slot keep) {
        Iterator<Map.Entry<Long, Slot>> it = lru.entrySet().iterator();
        while (usedBytes > capacityBytes && it.hasNext()) {
            Slot s = it.next().getValue();
            if (s == keep || !s.isEvictable()) {
                continue;   // loading, or dirty: only the writer writes dirty tables back
            }
            usedBytes -= s.sizeBytes();
            evictions++;
            it.remove();
        }
    }

    // ---- write side: every method below runs under the image's metadata write lock ----

    /** Makes this cache writable: dirty tables go out through {@code wb}; {@code hook} may be null. */
    void enableWriteBack(WriteBack wb, FlushHook hook) {
        this.writeBack = wb;
        this.flushHook = hook;
    }

    /**
     * Adds (or replaces) the table at {@code hostOffset} with {@code data} (one cluster), dirty: a new
     * L2 table or refcount block that exists only in memory until written back.
     */
    Table install(long hostOffset, ByteBuffer data) {
        Table table = new Table(hostOffset, data);
        table.dirty = true;
        Slot slot = new Slot();
        slot.complete(table);
        synchronized (lock) {
            Slot old = lru.put(hostOffset, slot);
            if (old != null) {
                usedBytes -= old.sizeBytes();
            }
            usedBytes += table.sizeBytes();
        }
        return table;
    }

    /** Records that {@code table} was modified in memory. */
    void markDirty(Table table) {
        if (writeBack == null) {
            throw new IllegalStateException("markDirty on a read-only metadata cache");
        }
        table.dirty = true;
    }

    /**
     * Before any dirty table of this cache is written, {@code dependency} is flushed. As in QEMU, an
     * existing dependency of {@code dependency} is flushed first, and so is a different existing
     * dependency of this cache, so that the dependency graph never has a cycle or a chain.
     */
    void setDependency(MetadataCache dependency) throws IOException {
        if (dependency.depends != null) {
            dependency.flushDependency();
        }
        if (depends != null && depends != dependency) {
            flushDependency();
        }
        depends = dependency;
    }

    /** The next write-back of this cache must be preceded by an fsync (data before metadata). */
    void dependsOnFsync() {
        dependsOnFsync = true;
    }

    /** Forgets a pending data fsync that has been done by the caller (see Qcow2Image flush). */
    void clearFsyncDependency() {
        dependsOnFsync = false;
    }

    boolean hasDirty() {
        synchronized (lock) {
            for (Slot s : lru.values()) {
                Table t = s.loaded();
                if (t != null && t.dirty) {
                    return true;
                }
            }
        }
        return false;
    }

    private void flushDependency() throws IOException {
        MetadataCache d = depends;
        depends = null;
        d.flush();
    }

    /** Steps every write-back takes first: the dependency, then the fsync dependency. */
    private void beforeWriteBack() throws IOException {
        if (depends != null) {
            flushDependency();
        }
        if (dependsOnFsync) {
            writeBack.sync();
            dependsOnFsync = false;
        }
    }

    /**
     * Writes every dirty table (dependency first), syncs, then runs the after-flush hook.
     * On exit no table of this cache is dirty and everything written is durable.
     */
    void flush() throws IOException {
        if (writeBack == null) {
            return;
        }
        List<Table> dirty = dirtyTables();
        if (!dirty.isEmpty()) {
            beforeWriteBack();
            for (Table t : dirty) {
                writeBack.write(t.hostOffset, t.buffer());
                t.dirty = false;
            }
            writeBack.sync();
        }
        if (flushHook != null) {
            flushHook.afterFlush();
        }
    }

    /** When the cache holds more than its capacity, writes dirty tables back so they can be evicted. */
    void writeBackIfOverCapacity() throws IOException {
        boolean over;
        synchronized (lock) {
            over = usedBytes > capacityBytes;
        }
        if (!over) {
            return;
        }
        flush();
        synchronized (lock) {
            evict(null);
        }
    }

    /** Drops the table at {@code hostOffset} whatever its state (its cluster was freed). */
    void discard(long hostOffset) {
        synchronized (lock) {
            Slot s = lru.get(hostOffset);
            if (s != null && s.isLoaded()) {
                lru.remove(hostOffset);
                usedBytes -= s.sizeBytes();
            }
        }
    }

    private List<Table> dirtyTables() {
        List<Table> out = new ArrayList<>();
        synchronized (lock) {
            for (Slot s : lru.values()) {
                Table t = s.loaded();
                if (t != null && t.dirty) {
                    out.add(t);
                }
            }
        }
        out.sort(Comparator.comparingLong(Table::hostOffset));
        return out;
    }

    /** Drops every table (after close, or when the write engine replaces tables wholesale). */
    void clear() {
        synchronized (lock) {
            Iterator<Map.Entry<Long, Slot>> it = lru.entrySet().iterator();
            while (it.hasNext()) {
                Slot s = it.next().getValue();
                if (s.isLoaded()) {   // dirty ones too: clear() is for close (after flush) and rebuilds
                    usedBytes -= s.sizeBytes();
                    it.remove();
                }
            }
        }
    }

    /** Counters for tests and metrics. */
    record Stats(long hits, long loads, long evictions, long usedBytes, long capacityBytes, int tables) {
    }

    Stats stats() {
        synchronized (lock) {
            return new Stats(hits, loads, evictions, usedBytes, capacityBytes, lru.size());
        }
    }

    long capacityBytes() {
        return capacityBytes;
    }

    /** A failure seen by another thread, rethrown with this thread's stack but the same kind and text. */
    private static IOException rethrowable(IOException e) {
        if (e instanceof BlockException b) {
            return new BlockException(b.kind(), b.resource(), b.offset(), b.detail(), b);
        }
        if (e instanceof InterruptedIOException) {
            return new InterruptedIOException(e.getMessage());
        }
        return new IOException(e.getMessage(), e);
    }
}
