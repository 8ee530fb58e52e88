package dev.shear.qcow2;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.ByteBuffer;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A byte-bounded LRU cache of one-cluster metadata tables (L2 tables now, refcount blocks later),
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
 * <h2>Write-side hooks (documented, not implemented: the write engine adds them)</h2>
 * <ul>
 *   <li>{@code markDirty(Table)}: the table was modified in memory; a dirty table is never evicted
 *       until written back (eviction of a dirty entry writes it first, QEMU {@code qcow2_cache_entry_flush}).</li>
 *   <li>{@code flushDependency(MetadataCache other)}: before any dirty table of this cache is written,
 *       every dirty table of {@code other} is written and the file synced (the L2 cache depends on the
 *       refcount cache: refcounts must be durable before a table points at the cluster; qcow2-format.md
 *       §10 step 1, QEMU {@code qcow2_cache_set_dependency}).</li>
 *   <li>{@code dependsOnFsync()}: the next write-back must be preceded by an fsync of the data file.</li>
 *   <li>Tables become mutable only through a write lease (copy-on-write of the {@link Table} under the
 *       image's metadata write lock), so readers holding an old {@code Table} never see a torn update.</li>
 * </ul>
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

    /** An immutable cached table: big-endian 64-bit entries over one cluster. */
    static final class Table {
        private final long hostOffset;
        private final ByteBuffer data;

        Table(long hostOffset, ByteBuffer data) {
            this.hostOffset = hostOffset;
            this.data = data.asReadOnlyBuffer();
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
            if (s == keep || !s.isLoaded()) {
                continue;
            }
            usedBytes -= s.sizeBytes();
            evictions++;
            it.remove();
        }
    }

    /** Drops every table (after close, or when the write engine replaces tables wholesale). */
    void clear() {
        synchronized (lock) {
            Iterator<Map.Entry<Long, Slot>> it = lru.entrySet().iterator();
            while (it.hasNext()) {
                Slot s = it.next().getValue();
                if (s.isLoaded()) {
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
