package dev.shear.qcow2;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.atomic.LongAdder;

/**
 * A byte-bounded cache (approximate LRU: clock / second chance) of one-cluster metadata tables
 * (L2 tables, refcount blocks), keyed by host offset (QEMU block/qcow2-cache.c; style.md §2).
 *
 * <h2>Design</h2>
 * <ul>
 *   <li>{@link #get} returns the cached table or loads it on a miss. The loader's I/O runs outside
 *       every lock: the first thread to miss installs a "loading" slot and reads the cluster; other
 *       threads wanting the same table wait for that slot, threads wanting other tables go on. There is
 *       no global lock around data or metadata I/O.</li>
 *   <li><b>A hit takes no lock.</b> The index is an open-addressed table of slots keyed by the primitive
 *       host offset (no boxing), read without locking (acquire loads; writers publish with release
 *       stores, and a resize publishes a new array); a hit sets the slot's second-chance bit (only if
 *       clear: no cache-line writes for hot tables) and bumps a {@link LongAdder}. A lookup that finds
 *       nothing, or a slot still loading, goes to the locked path and looks again there.</li>
 *   <li>{@code lock} guards every change of the index, the clock ring (insertion order), the byte
 *       total and the other counters; it is held for a few operations, never across I/O or a loader
 *       call.</li>
 *   <li>Capacity is in bytes of table data. After each load, tables are evicted until the total fits,
 *       by the clock: from the oldest, a table whose second-chance bit is set (hit since it was last
 *       looked at) has it cleared and goes to the young end, one without it is evicted; a table being
 *       loaded is never evicted, and the table just loaded stays even if it alone exceeds the
 *       capacity (so a tiny capacity degrades to "reload every time" and never fails).</li>
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
        private final byte[] array;        // data's backing array (heap tables), or null
        private final int arrayOffset;
        private volatile boolean dirty;   // guarded by the image's metadata write lock (read by evict)

        Table(long hostOffset, ByteBuffer data) {
            this.hostOffset = hostOffset;
            this.data = data.duplicate().clear();
            this.array = this.data.hasArray() ? this.data.array() : null;
            this.arrayOffset = array != null ? this.data.arrayOffset() : 0;
        }

        /**
         * The first index in [{@code from}, {@code to}) whose 64-bit entry, copied bit (63) masked off,
         * is not {@code want + (index - from) * step}; {@code to} if there is none. The block-status and
         * read scans' tight loop (ClusterMapper): no per-entry validation or classification needed,
         * because an entry equal to the expected value of a valid run is itself valid and of its kind.
         */
        int scanRun(int from, int to, long want, long step) {
            long w = want;
            if (array != null) {
                byte[] a = array;
                int base = arrayOffset;
                for (int i = from; i < to; i++) {
                    if (((long) BE_LONGS.get(a, base + (i << 3)) & ~L2Entry.COPIED) != w) {
                        return i;
                    }
                    w += step;
                }
                return to;
            }
            for (int i = from; i < to; i++) {
                if ((data.getLong(i << 3) & ~L2Entry.COPIED) != w) {
                    return i;
                }
                w += step;
            }
            return to;
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

    /**
     * One entry: loading until {@code table} or {@code failure} is set. The key is final (lock-free
     * readers compare it); the ring links and {@code linked} are guarded by the cache's lock.
     */
    private static final class Slot {
        final long key;
        private volatile Table table;  // set once (under this), read without locking
        private IOException failure;   // guarded by this; set once
        boolean referenced;            // second-chance bit: set by hits without a lock, cleared by the clock
        Slot prev;                     // clock ring (oldest first); guarded by the cache's lock
        Slot next;                     // guarded by the cache's lock
        boolean linked;                // in the index and the ring; guarded by the cache's lock

        Slot(long key) {
            this.key = key;
        }

        synchronized void complete(Table t) {
            table = t;
            notifyAll();
        }

        synchronized void fail(IOException e) {
            failure = e;
            notifyAll();
        }

        boolean isLoaded() {
            return table != null;
        }

        boolean isEvictable() {
            Table t = table;
            return t != null && !t.dirty;
        }

        Table loaded() {
            return table;
        }

        Table await() throws IOException {
            Table t = table;
            return t != null ? t : awaitSlow();
        }

        private synchronized Table awaitSlow() throws IOException {
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

        long sizeBytes() {
            Table t = table;
            return t == null ? 0 : t.sizeBytes();
        }
    }

    /** A removed index entry: probes go on past it (open addressing never breaks a probe chain). */
    private static final Slot TOMBSTONE = new Slot(-1);
    private static final VarHandle SLOTS = MethodHandles.arrayElementVarHandle(Slot[].class);
    /** Big-endian 64-bit view of a byte[] (tables are big-endian). */
    private static final VarHandle BE_LONGS =
            MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.BIG_ENDIAN);
    private static final int MIN_INDEX = 64;

    private final String resource;
    private final long capacityBytes;
    private final Object lock = new Object();        // guards index changes, the ring, usedBytes, counters
    /** Open-addressed, linear probing, power-of-two length, at most half full (live + tombstones). */
    private volatile Slot[] index = new Slot[MIN_INDEX];  // written under lock, read without it
    private int live;                                // slots in the index; guarded by lock
    private int tombstones;                          // guarded by lock
    private Slot head;                               // oldest of the ring; guarded by lock
    private Slot tail;                               // youngest; guarded by lock
    private long usedBytes;                          // guarded by lock
    private final LongAdder hits = new LongAdder();  // bumped without a lock
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
     * On exit: the table is cached (unless evicted by later loads) and marked used (second-chance bit).
     */
    Table get(long hostOffset, Loader loader) throws IOException {
        Slot hit = find(hostOffset);
        if (hit != null) {
            Table t = hit.table;
            if (t != null) {
                if (!hit.referenced) {
                    hit.referenced = true;
                }
                hits.increment();
                return t;
            }
        }
        return getLocked(hostOffset, loader);
    }

    /** The miss (or still-loading) path of {@link #get}: looks again under the lock, loads outside it. */
    private Table getLocked(long hostOffset, Loader loader) throws IOException {
        Slot slot;
        boolean mine = false;
        synchronized (lock) {
            slot = find(hostOffset);
            if (slot == null) {
                slot = new Slot(hostOffset);
                link(slot);
                loads++;
                mine = true;
            } else {
                slot.referenced = true;
                hits.increment();
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
                if (slot.linked) {
                    unlink(slot);
                }
            }
            IOException failure = e instanceof IOException io ? io
                    : new BlockException(BlockErrorKind.IO, resource, hostOffset, "metadata load: " + e, e);
            slot.fail(failure);
            throw e;
        }
        slot.complete(table);
        synchronized (lock) {
            if (slot.linked) {
                usedBytes += table.sizeBytes();
            }
            evict(slot);
        }
        return table;
    }

    /**
     * Evicts clean loaded tables until the capacity holds, sparing {@code keep}: the clock from the
     * oldest; a table hit since it was last passed gets a second chance (bit cleared, moved to the young
     * end). Each slot is passed at most twice, so this ends. Holds lock.
     */
    private void evict(Slot keep) {
        int steps = 2 * live + 1;
        Slot s = head;
        while (usedBytes > capacityBytes && s != null && steps-- > 0) {
            Slot next = s.next;
            if (s != keep && s.isEvictable()) {   // else loading, or dirty: only the writer writes those back
                if (s.referenced) {
                    s.referenced = false;
                    if (next != null) {
                        unlinkRing(s);
                        linkRing(s);
                    }
                } else {
                    usedBytes -= s.sizeBytes();
                    evictions++;
                    unlink(s);
                }
            }
            s = next != null ? next : head;
        }
    }

    // ---- the index (lock-free reads) and the ring ----

    private static int hash(long key) {
        long h = key * 0x9E3779B97F4A7C15L;
        return (int) (h ^ (h >>> 32));
    }

    /** The slot for {@code key} or null; without a lock (a stale answer only sends a caller to the locked path). */
    private Slot find(long key) {
        Slot[] t = index;
        int mask = t.length - 1;
        for (int i = hash(key) & mask; ; i = (i + 1) & mask) {
            Slot s = (Slot) SLOTS.getAcquire(t, i);
            if (s == null) {
                return null;
            }
            if (s != TOMBSTONE && s.key == key) {
                return s;
            }
        }
    }

    /** Adds {@code s} to the index (replacing a slot of the same key) and the young end of the ring. Holds lock. */
    private void link(Slot s) {
        if ((live + tombstones + 1) * 2 > index.length) {
            rehash(live + 1);
        }
        Slot[] t = index;
        int mask = t.length - 1;
        int free = -1;
        for (int i = hash(s.key) & mask; ; i = (i + 1) & mask) {
            Slot e = t[i];
            if (e == null) {
                if (free < 0) {
                    free = i;
                }
                break;
            }
            if (e == TOMBSTONE) {
                if (free < 0) {
                    free = i;
                }
            } else if (e.key == s.key) {
                e.linked = false;
                unlinkRing(e);
                SLOTS.setRelease(t, i, s);
                s.linked = true;
                linkRing(s);
                return;
            }
        }
        if (t[free] == TOMBSTONE) {
            tombstones--;
        }
        live++;
        SLOTS.setRelease(t, free, s);
        s.linked = true;
        linkRing(s);
    }

    /** Removes {@code s} (linked) from the index and the ring. Holds lock. */
    private void unlink(Slot s) {
        Slot[] t = index;
        int mask = t.length - 1;
        for (int i = hash(s.key) & mask; ; i = (i + 1) & mask) {
            Slot e = t[i];
            if (e == s) {
                SLOTS.setRelease(t, i, TOMBSTONE);
                break;
            }
            if (e == null) {
                throw new IllegalStateException("metadata cache: linked slot 0x" + Long.toHexString(s.key)
                        + " missing from the index");
            }
        }
        live--;
        tombstones++;
        s.linked = false;
        unlinkRing(s);
    }

    /** A fresh index for {@code n} slots, without tombstones, published whole. Holds lock. */
    private void rehash(int n) {
        int length = MIN_INDEX;
        while (length < 4L * n) {
            length <<= 1;
        }
        Slot[] t = new Slot[length];
        int mask = length - 1;
        for (Slot s = head; s != null; s = s.next) {
            int i = hash(s.key) & mask;
            while (t[i] != null) {
                i = (i + 1) & mask;
            }
            t[i] = s;
        }
        tombstones = 0;
        index = t;   // volatile write: readers see the whole new array
    }

    private void linkRing(Slot s) {
        s.prev = tail;
        s.next = null;
        if (tail == null) {
            head = s;
        } else {
            tail.next = s;
        }
        tail = s;
    }

    private void unlinkRing(Slot s) {
        if (s.prev == null) {
            head = s.next;
        } else {
            s.prev.next = s.next;
        }
        if (s.next == null) {
            tail = s.prev;
        } else {
            s.next.prev = s.prev;
        }
        s.prev = null;
        s.next = null;
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
        Slot slot = new Slot(hostOffset);
        slot.complete(table);
        synchronized (lock) {
            Slot old = find(hostOffset);
            if (old != null) {
                usedBytes -= old.sizeBytes();
            }
            link(slot);   // replaces old in place
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
            for (Slot s = head; s != null; s = s.next) {
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
            Slot s = find(hostOffset);
            if (s != null && s.isLoaded()) {
                unlink(s);
                usedBytes -= s.sizeBytes();
            }
        }
    }

    private List<Table> dirtyTables() {
        List<Table> out = new ArrayList<>();
        synchronized (lock) {
            for (Slot s = head; s != null; s = s.next) {
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
            Slot s = head;
            while (s != null) {
                Slot next = s.next;
                if (s.isLoaded()) {   // dirty ones too: clear() is for close (after flush) and rebuilds
                    usedBytes -= s.sizeBytes();
                    unlink(s);
                }
                s = next;
            }
        }
    }

    /** Counters for tests and metrics. */
    record Stats(long hits, long loads, long evictions, long usedBytes, long capacityBytes, int tables) {
    }

    Stats stats() {
        synchronized (lock) {
            return new Stats(hits.sum(), loads, evictions, usedBytes, capacityBytes, live);
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
