package dev.shear.qcow2;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * Internal snapshots of a writable image: create, apply (revert the disk), delete, as
 * {@code qemu-img snapshot -c/-a/-d} do (qcow2-format.md §8, §10; QEMU block/qcow2-snapshot.c
 * {@code qcow2_snapshot_create}, {@code qcow2_snapshot_goto}, {@code qcow2_snapshot_delete},
 * {@code qcow2_write_snapshots}; qcow2-refcount.c {@code qcow2_update_snapshot_refcount}).
 *
 * <p>An internal snapshot here is a <em>disk</em> snapshot: a saved L1 table; no VM state is stored
 * (vm_state_size 0, vm clock 0). Applying one reverts the disk's content; it is not a checkpoint in the
 * bitmap sense (persistent dirty bitmaps are not rolled back).
 *
 * <h2>Walking a tree ({@link #walk}, QEMU qcow2_update_snapshot_refcount)</h2>
 * For every L2 table an L1 table reaches: add {@code addend} to the refcount of every data / zero-alloc
 * cluster and every compressed sector range it maps, then to the L2 table itself; then set the copied
 * flag of each standard entry and of the L1 entry to "refcount == 1" (never on compressed entries). A
 * cluster reached through a shared L2 table is counted once per path, as QEMU and {@code qemu-img check}
 * count it.
 *
 * <h2>Order (a crash leaves leaks at most)</h2>
 * <ul>
 *   <li>create: copy the active L1 to new clusters; +1 on the active tree, copied flags cleared; flush
 *       (refcounts, then L2, then L1); then the new snapshot table, the header (nb_snapshots,
 *       snapshots_offset) in one write, and only then the old table is freed.</li>
 *   <li>apply: +1 on the snapshot's tree; flush; the active L1 overwritten with the snapshot's; flush;
 *       -1 on the old active tree (its references are gone from disk); copied flags recomputed; flush.</li>
 *   <li>delete: the table without the entry and the header first; then -1 on the snapshot's tree and
 *       its L1 clusters freed; copied flags of the active tree recomputed; flush.</li>
 * </ul>
 *
 * <p>Thread safety: the engine takes the image's metadata write lock for each operation; it is meant for
 * an image no guest is writing (qemu-img's use), and the {@link Qcow2Image#snapshots()} list of the open
 * image is not refreshed (reopen to see the new table).
 */
public final class Qcow2SnapshotEngine {
    private final MetadataWriter meta;
    private final ClusterAllocator alloc;
    private final String resource;
    private final int clusterBits;
    private final int clusterSize;
    private final int entryBytes;
    private final boolean extendedL2;
    private List<Qcow2Snapshot> snapshots;   // the table as on disk; guarded by the metadata write lock

    /**
     * An engine over {@code image}, which must be open read-write (and stays owned by the caller).
     *
     * @throws BlockException READ_ONLY for a read-only image
     */
    public Qcow2SnapshotEngine(Qcow2Image image) throws IOException {
        this.meta = (MetadataWriter) image.allocator();
        this.alloc = meta.allocatorInternal();
        this.resource = image.name();
        Qcow2Header h = meta.header();
        this.clusterBits = h.clusterBits();
        this.clusterSize = 1 << clusterBits;
        this.extendedL2 = h.hasExtendedL2();
        this.entryBytes = extendedL2 ? 16 : 8;
        this.snapshots = new ArrayList<>(image.snapshots());
        // Snapshot operations do not change guest data: persistent bitmaps stay valid.
        meta.maintainAutoclear(h.autoclearFeatures() & FeatureBits.AUTOCLEAR_BITMAPS);
    }

    /** The snapshot table as it is now. */
    public List<Qcow2Snapshot> snapshots() {
        return List.copyOf(snapshots);
    }

    /**
     * {@code qemu-img snapshot -c NAME}: a snapshot of the active disk, ID = the largest numeric ID + 1
     * (QEMU find_new_snapshot_id), date = now (microsecond precision as qemu-img), vm clock 0, no VM
     * state, disk size = the virtual size, icount 0 (what qemu-img 7.2 stores: it zero-fills the entry).
     */
    public Qcow2Snapshot create(String name) throws IOException {
        if (snapshots.size() >= Qcow2Limits.MAX_SNAPSHOTS) {
            throw BlockException.invalid(resource, -1, "nb_snapshots: %d (expected: < %d)", snapshots.size(),
                    Qcow2Limits.MAX_SNAPSHOTS);
        }
        if (meta.header().refcountOrder() == 0) {
            // Every cluster of the disk would need refcount 2; refuse before changing anything.
            throw BlockException.invalid(resource, -1, "refcount_bits: 1 (expected: >= 2 for internal snapshots)");
        }
        long micros = Math.multiplyExact(System.currentTimeMillis(), 1000L) + (System.nanoTime() / 1000) % 1000;
        meta.beginWrite();
        meta.lock().writeLock().lock();
        try {
            meta.flush();   // pending frees applied: refcounts are exact before the walk
            Qcow2Header h = meta.header();
            long[] l1 = meta.activeL1();
            long l1Offset = 0;
            if (l1.length > 0) {
                long bytes = l1.length * 8L;
                l1Offset = alloc.allocate((bytes + clusterSize - 1) >>> clusterBits);
                ByteBuffer b = ByteBuffer.allocate((int) bytes);
                b.asLongBuffer().put(l1);
                meta.checkOverlap(l1Offset, bytes);
                meta.writeData(l1Offset, b);
            }
            walk(l1, 1, true);
            meta.flush();   // snapshot L1 data, refcounts, L2 and L1 copied flags durable
            Qcow2Snapshot sn = new Qcow2Snapshot(nextId(), name, l1Offset, l1.length, micros / 1_000_000,
                    (int) (micros % 1_000_000) * 1000, 0, 0, h.size(), 0, null);
            List<Qcow2Snapshot> next = new ArrayList<>(snapshots);
            next.add(sn);
            writeTable(next);
            return sn;
        } finally {
            meta.lock().writeLock().unlock();
        }
    }

    /**
     * {@code qemu-img snapshot -a SNAPSHOT}: reverts the active disk to the snapshot found by ID, else by
     * name (QEMU find_snapshot_by_id_or_name).
     *
     * @throws BlockException INVALID_ARGUMENT if there is no such snapshot, NOT_SUPPORTED if the snapshot
     *         has a different disk size or a larger L1 table (QEMU would resize the disk first)
     */
    public Qcow2Snapshot apply(String idOrName) throws IOException {
        Qcow2Snapshot sn = Qcow2Snapshot.find(snapshots, idOrName);
        if (sn == null) {
            throw BlockException.invalid(resource, -1, "snapshot: %s (expected: the ID or name of a snapshot)",
                    idOrName);
        }
        meta.beginWrite();
        meta.lock().writeLock().lock();
        try {
            meta.flush();
            long[] l1 = meta.activeL1();
            Qcow2Header h = meta.header();
            if (sn.l1Size() > l1.length || (sn.diskSize() >= 0 && sn.diskSize() != h.size())) {
                throw new BlockException(BlockErrorKind.NOT_SUPPORTED, resource, -1, String.format(
                        "snapshot %s: disk size %d, l1_size %d (expected: the current disk size %d and l1_size "
                                + "<= %d; resizing on apply is not implemented)", sn.name(), sn.diskSize(),
                        sn.l1Size(), h.size(), l1.length));
            }
            long[] snL1 = new long[l1.length];
            if (sn.l1Size() > 0) {
                ByteBuffer b = ByteBuffer.allocate(sn.l1Size() * 8);
                readFully(sn.l1TableOffset(), b);
                b.flip().asLongBuffer().get(snL1, 0, sn.l1Size());
            }
            walk(snL1, 1, false);
            meta.flush();   // the snapshot's tree is counted once more before anything points at it
            long[] old = l1.clone();
            System.arraycopy(snL1, 0, l1, 0, l1.length);
            meta.markL1Dirty();
            meta.flush();   // the active L1 is the snapshot's now, on disk
            walk(old, -1, false);
            walk(l1, 0, true);
            meta.flush();
            return sn;
        } finally {
            meta.lock().writeLock().unlock();
        }
    }

    /**
     * {@code qemu-img snapshot -d SNAPSHOT}: deletes the first snapshot with that name (qemu-img looks
     * snapshots up by name only here, bdrv_snapshot_find).
     *
     * @throws BlockException INVALID_ARGUMENT if no snapshot has that name
     */
    public Qcow2Snapshot delete(String name) throws IOException {
        Qcow2Snapshot sn = null;
        for (Qcow2Snapshot s : snapshots) {
            if (s.name().equals(name)) {
                sn = s;
                break;
            }
        }
        if (sn == null) {
            throw BlockException.invalid(resource, -1, "snapshot: %s (expected: the name of a snapshot)", name);
        }
        meta.beginWrite();
        meta.lock().writeLock().lock();
        try {
            meta.flush();
            List<Qcow2Snapshot> next = new ArrayList<>(snapshots);
            next.remove(sn);
            writeTable(next);   // durable: nothing on disk references the snapshot's L1 any more
            long[] snL1 = new long[sn.l1Size()];
            if (sn.l1Size() > 0) {
                ByteBuffer b = ByteBuffer.allocate(sn.l1Size() * 8);
                readFully(sn.l1TableOffset(), b);
                b.flip().asLongBuffer().get(snL1);
            }
            walk(snL1, -1, false);
            if (sn.l1Size() > 0) {
                alloc.updateRefcount(sn.l1TableOffset(), sn.l1Size() * 8L, -1);
            }
            walk(meta.activeL1(), 0, true);
            meta.flush();
            return sn;
        } finally {
            meta.lock().writeLock().unlock();
        }
    }

    /** Largest numeric ID + 1, as QEMU find_new_snapshot_id (strtoul: non-numeric IDs count as 0). */
    private String nextId() {
        long max = 0;
        for (Qcow2Snapshot s : snapshots) {
            max = Math.max(max, parseId(s.id()));
        }
        return Long.toString(max + 1);
    }

    private static long parseId(String id) {
        int i = 0;
        while (i < id.length() && Character.isDigit(id.charAt(i)) && i < 18) {
            i++;
        }
        return i == 0 ? 0 : Long.parseLong(id.substring(0, i));
    }

    /**
     * QEMU qcow2_update_snapshot_refcount over the L1 table {@code l1}: see the class notes. Updates the
     * copied flags in {@code l1} and in the L2 tables (through the cache); marks the active L1 dirty when
     * {@code active} and an entry changed. Caller holds the write lock.
     */
    private void walk(long[] l1, int addend, boolean active) throws IOException {
        boolean[] l1Modified = {false};
        try {
            walkTables(l1, addend, l1Modified);
        } finally {
            // Also after a failure (refcount overflow half-way): the copied flags already changed must
            // reach the disk with the refcounts, so that a failed operation leaves leaks only.
            if (active && l1Modified[0]) {
                meta.markL1Dirty();
            }
        }
    }

    private void walkTables(long[] l1, int addend, boolean[] l1Modified) throws IOException {
        int entries = clusterSize / entryBytes;
        for (int i = 0; i < l1.length; i++) {
            long l2Offset = L1Entry.offset(l1[i]);
            if (l2Offset == 0) {
                continue;
            }
            MetadataCache.Table t = meta.loadL2(l2Offset);
            boolean[] modified = {false};
            try {
                walkEntries(t, entries, addend, modified);
            } finally {
                if (modified[0]) {
                    meta.markL2Dirty(t);   // entries changed before a failure are written too
                }
            }
            if (addend != 0) {
                alloc.updateRefcount(l2Offset, clusterSize, addend);
            }
            long ne = alloc.refcount(l2Offset) == 1 ? L1Entry.of(l2Offset, true) : L1Entry.of(l2Offset, false);
            if (ne != l1[i]) {
                l1[i] = ne;
                l1Modified[0] = true;
            }
        }
    }

    /** The entries of one L2 table: refcounts and copied flags; {@code modified[0]} set if an entry changed. */
    private void walkEntries(MetadataCache.Table t, int entries, int addend, boolean[] modified) throws IOException {
        for (int j = 0; j < entries; j++) {
            long e = t.getLong(j * entryBytes);
            long refcount;
            switch (L2Entry.type(e, extendedL2)) {
                case COMPRESSED -> {
                    if (addend != 0) {
                        alloc.updateRefcount(L2Entry.compressedRangeStart(e, clusterBits),
                                L2Entry.compressedRangeLength(e, clusterBits), addend);
                    }
                    refcount = 2;   // compressed clusters never carry the copied flag
                }
                case NORMAL, ZERO_ALLOC -> {
                    long host = L2Entry.offset(e);
                    if (addend != 0) {
                        alloc.updateRefcount(host, clusterSize, addend);
                    }
                    refcount = alloc.refcount(host);
                }
                default -> {
                    continue;
                }
            }
            long ne = refcount == 1 ? e | L2Entry.COPIED : e & ~L2Entry.COPIED;
            if (ne != e) {
                t.putLong(j * entryBytes, ne);
                modified[0] = true;
            }
        }
    }

    /**
     * QEMU qcow2_write_snapshots: the new table in new clusters (durable), then nb_snapshots and
     * snapshots_offset in the header, then the old table freed. Caller holds the write lock.
     */
    private void writeTable(List<Qcow2Snapshot> next) throws IOException {
        Qcow2Header h = meta.header();
        long oldOffset = h.snapshotsOffset();
        long oldBytes = 0;
        for (Qcow2Snapshot s : snapshots) {
            oldBytes += SnapshotTable.entrySize(s);
        }
        ByteBuffer table = SnapshotTable.encode(next);
        long offset = 0;
        if (table.hasRemaining()) {
            offset = alloc.allocate((table.remaining() + clusterSize - 1L) >>> clusterBits);
            meta.flush();   // the new clusters' refcounts before the header names them
            meta.checkOverlap(offset, table.remaining());
            meta.writeData(offset, table);
            meta.flush();   // syncs the table
        }
        h = meta.header();
        meta.writeHeader(new Qcow2Header(h.version(), h.backingFileOffset(), h.backingFileSize(), h.clusterBits(),
                h.size(), h.cryptMethod(), h.l1Size(), h.l1TableOffset(), h.refcountTableOffset(),
                h.refcountTableClusters(), next.size(), offset, h.incompatibleFeatures(), h.compatibleFeatures(),
                h.autoclearFeatures(), h.refcountOrder(), h.headerLength(), h.compressionType(),
                h.unknownHeaderFields(), h.extensions(), h.backingFileName()));
        if (!snapshots.isEmpty() && oldBytes > 0) {
            alloc.updateRefcount(oldOffset, oldBytes, -1);   // the header no longer points at it (synced)
        }
        snapshots = new ArrayList<>(next);
    }

    private void readFully(long offset, ByteBuffer b) throws IOException {
        meta.readMetadata(offset, b);
    }
}
