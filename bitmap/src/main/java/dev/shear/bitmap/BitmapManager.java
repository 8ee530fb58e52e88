package dev.shear.bitmap;

import dev.shear.block.BlockDevice;
import dev.shear.block.BlockException;
import dev.shear.block.IoFailures;
import dev.shear.qcow2.BitmapsExtension;
import dev.shear.qcow2.Qcow2Header;
import dev.shear.qcow2.Qcow2Image;
import dev.shear.qcow2.bitmap.BitmapDirectoryEntry;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The persistent dirty bitmaps of one qcow2 image opened read-write: what the NBD server, the backup
 * jobs, the control API and {@code shear bitmap} / {@code shear checkpoint} change bitmaps through
 * (dirty-bitmaps.md §4, §5, §6).
 *
 * <h2>Modes</h2>
 * <ul>
 *   <li>{@link Mode#TRACKING}: guest writes go through {@link #device()}. At open, BEFORE any write is
 *       accepted, every loaded bitmap is set in_use on disk (a new directory, committed by one header
 *       write, autoclear bit 0 kept: the engine is told with {@code maintainAutoclear}); a crash from
 *       then on leaves them inconsistent, never plausible-but-wrong (§10 pitfalls 3, 4). A clean
 *       {@link #close} stores the bitmaps and clears in_use. {@link #flushBitmaps} (the control API's
 *       bitmap flush; new checkpoints) stores them with in_use clear too, at an instant with no guest
 *       change in flight: the stored bitmaps are then exact, and usable after a crash, until the next
 *       guest change, which first sets in_use again, durably (one directory write and fsync), before
 *       it reaches the image. So a crash never leaves a bitmap that is clean on disk but misses a
 *       write, and an idle disk whose bitmaps were flushed survives a crash with them usable.</li>
 *   <li>{@link Mode#EDIT}: offline edits (the CLI). Nothing is written until {@link #close}, which
 *       stores once if anything changed; {@link #discard} abandons every change, so a command line
 *       with a bad operation changes nothing.</li>
 * </ul>
 *
 * <h2>Rules (as QEMU)</h2>
 * Bitmaps found in_use (or unsupported) are kept on disk unchanged and may only be removed; the
 * next backup must be full. A bitmaps extension found with autoclear bit 0 clear is stale: its
 * bitmaps are listed in {@link #warning()} but dropped from the image at the first store (QEMU drops
 * them at a read-write open; their clusters leak until {@code qemu-img check -r leaks}).
 *
 * <h2>Locking</h2>
 * {@link #quiesce} (read side held by every guest write through {@link #device()}, write side by
 * {@link #atInstant}) orders bitmap changes against guest writes; the monitor of this object guards
 * the item list and the on-disk directory position. Order: quiesce, then the monitor, then a
 * bitmap's own lock.
 */
public final class BitmapManager {
    /** qcow2: at most 65535 bitmaps (QEMU QCOW2_MAX_BITMAPS). */
    public static final int MAX_BITMAPS = 65535;
    /** qcow2: bitmap directory at most 1024 x 65535 bytes (QEMU QCOW2_MAX_BITMAP_DIRECTORY_SIZE). */
    public static final long MAX_DIRECTORY_BYTES = 1024L * MAX_BITMAPS;
    /** qcow2: names of 1..1023 bytes (QEMU BME_MAX_NAME_SIZE). */
    public static final int MAX_NAME_BYTES = 1023;

    /** How the image is used while the manager is open. */
    public enum Mode {
        /** Guest writes through {@link #device()}; in_use set at open, cleared at close. */
        TRACKING,
        /** Offline edits stored once at close. */
        EDIT
    }

    /**
     * One bitmap as the manager sees it.
     *
     * @param name        bitmap name
     * @param granularity bytes per bit
     * @param enabled     recording (the {@code auto} flag); for unusable bitmaps the on-disk flag
     * @param inUse       in_use on disk when the image was opened (inconsistent)
     * @param status      USABLE, INCONSISTENT or UNSUPPORTED
     * @param problem     why it is not usable (one sentence), or null
     * @param dirtyBytes  bytes marked dirty, -1 when not usable
     */
    public record BitmapInfo(String name, long granularity, boolean enabled, boolean inUse,
            PersistentBitmaps.Status status, String problem, long dirtyBytes) {
        public boolean usable() {
            return status == PersistentBitmaps.Status.USABLE;
        }
    }

    /** A directory position: live (usable) bitmap and/or its current on-disk entry. */
    private static final class Item {
        final String name;
        final DirtyBitmap live;              // null unless USABLE
        BitmapDirectoryEntry onDisk;         // null for a bitmap not stored yet
        final PersistentBitmaps.Status status;
        final String problem;

        Item(String name, DirtyBitmap live, BitmapDirectoryEntry onDisk, PersistentBitmaps.Status status,
                String problem) {
            this.name = name;
            this.live = live;
            this.onDisk = onDisk;
            this.status = status;
            this.problem = problem;
        }
    }

    private final Qcow2Image image;
    private final Qcow2BitmapStorage storage;
    private final Mode mode;
    private final String warning;
    /** Guest writes (read side) against instants at which bitmaps change (write side). */
    private final ReentrantReadWriteLock quiesce = new ReentrantReadWriteLock();
    private final DirtyTracker tracker;
    private final TrackingDevice device;

    // Guarded by this.
    private final List<Item> items = new ArrayList<>();
    /** Index of {@link #items} by name, and the encoded size of their directory entries. */
    private final Map<String, Item> byName = new HashMap<>();
    private long directoryBytes;
    private final List<BitmapDirectoryEntry> pendingFree = new ArrayList<>();
    private long dirOffset;
    private long dirSize;
    private boolean stale;
    private boolean modified;
    private boolean closed;
    /**
     * TRACKING: the bitmaps are stored with in_use clear and no guest change has happened since
     * ({@link #flushBitmaps}); the next change sets in_use first ({@link #beforeGuestChange}). Written
     * under the monitor; read without it on the write path.
     */
    private volatile boolean cleanOnDisk;

    private BitmapManager(Qcow2Image image, Mode mode, PersistentBitmaps loaded) throws IOException {
        this.image = image;
        this.mode = mode;
        this.storage = new Qcow2BitmapStorage(image);
        this.warning = loaded.warning();
        Qcow2Header h = image.header();
        BitmapsExtension ext = h.bitmapsExtension();
        this.stale = ext != null && !h.bitmapsConsistent();
        if (ext != null && !stale) {
            dirOffset = ext.directoryOffset();
            dirSize = ext.directorySize();
            for (PersistentBitmaps.Entry e : loaded.entries()) {
                index(new Item(e.name(), e.bitmap(), e.entry(), e.status(), e.problem()));
            }
        }
        List<DirtyBitmap> live = new ArrayList<>();
        for (Item i : items) {
            if (i.live != null) {
                live.add(i.live);
            }
        }
        this.tracker = mode == Mode.TRACKING ? new DirtyTracker(image, live) : null;
        this.device = mode == Mode.TRACKING ? new TrackingDevice(this, tracker, quiesce) : null;
    }

    /**
     * Opens the bitmaps of {@code image} (the active image, opened read-write). In TRACKING mode the
     * in_use flags are durable when this returns; hand out {@link #device()} only after.
     *
     * @throws BlockException READ_ONLY for a read-only image; what {@link PersistentBitmaps#load} throws
     */
    public static BitmapManager open(Qcow2Image image, Mode mode) throws IOException {
        if (image.openedSnapshot() != null) {
            throw BlockException.readOnly(image.name(), "bitmaps of an internal snapshot");
        }
        // Before anything is written: autoclear bit 0 is ours to keep from now on.
        image.allocator().maintainAutoclear(Qcow2BitmapStorage.AUTOCLEAR_BITMAPS);
        BitmapManager m = new BitmapManager(image, mode, PersistentBitmaps.load(image));
        if (mode == Mode.TRACKING) {
            m.markInUse();
        }
        return m;
    }

    /** The manager behind a device returned by {@link #device()}, or null for any other device. */
    public static BitmapManager of(BlockDevice device) {
        return device instanceof TrackingDevice t ? t.manager() : null;
    }

    /** The image. */
    public Qcow2Image image() {
        return image;
    }

    /** The device stack for guest I/O: image, then a {@link DirtyTracker}; TRACKING mode only. */
    public BlockDevice device() {
        if (device == null) {
            throw new IllegalStateException("device(): EDIT mode (expected: TRACKING)");
        }
        return device;
    }

    /** Why every bitmap the image had is unusable (autoclear bit 0 found clear), or null. */
    public String warning() {
        return warning;
    }

    /**
     * Runs {@code action} with guest writes quiesced: no write through {@link #device()} is in flight
     * and none starts until it returns. What a new checkpoint and a backup's snapshot point need to
     * share one instant (dirty-bitmaps.md §10 pitfall 10).
     */
    public <T> T atInstant(Callable<T> action) throws IOException {
        quiesce.writeLock().lock();
        try {
            return action.call();
        } catch (IOException | RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new IOException(e);
        } finally {
            quiesce.writeLock().unlock();
        }
    }

    // ---- queries ----

    /** Every bitmap in directory order. */
    public synchronized List<BitmapInfo> list() {
        List<BitmapInfo> out = new ArrayList<>(items.size());
        for (Item i : items) {
            if (i.live != null) {
                out.add(new BitmapInfo(i.name, i.live.granularity(), i.live.isEnabled(), false, i.status, null,
                        i.live.dirtyBytes()));
            } else {
                out.add(new BitmapInfo(i.name, i.onDisk.granularity(), i.onDisk.auto(), i.onDisk.inUse(), i.status,
                        i.problem, -1));
            }
        }
        return out;
    }

    /** The bitmap named {@code name}, or null. */
    public synchronized BitmapInfo find(String name) {
        for (BitmapInfo b : list()) {
            if (b.name().equals(name)) {
                return b;
            }
        }
        return null;
    }

    /**
     * The live bitmap named {@code name} (still recording if enabled: take a {@link DirtyBitmap#copy}
     * at the snapshot instant for a backup).
     *
     * @throws BlockException INVALID_ARGUMENT naming the bitmap: not found, or not usable and why
     */
    public synchronized DirtyBitmap require(String name) throws BlockException {
        return usable(item(name, "use"));
    }

    // ---- operations (qemu-img bitmap / QMP block-dirty-bitmap-*) ----

    /** The granularity QEMU picks when none is given: the cluster size clamped to 4 KiB..64 KiB. */
    public long defaultGranularity() {
        return Math.min(64L << 10, Math.max(4L << 10, image.clusterSize()));
    }

    /**
     * Adds a persistent bitmap, clean; granularity 0 means {@link #defaultGranularity()}. Every
     * limit is checked before anything changes.
     */
    public DirtyBitmap add(String name, long granularity, boolean enabled) throws IOException {
        return atInstant(() -> {
            synchronized (this) {
                checkOpen();
                long g = granularity == 0 ? defaultGranularity() : granularity;
                checkNewName(name);
                if (image.header().version() < 3) {
                    throw invalid("bitmap '%s': qcow2 version %d cannot store dirty bitmaps (expected: version 3, "
                            + "compat=1.1)", name, image.header().version());
                }
                if (g < 512 || g > (1L << DirtyBitmap.MAX_GRANULARITY_BITS) || Long.bitCount(g) != 1) {
                    throw invalid("bitmap '%s': granularity %d (expected: a power of two, 512..2147483648)", name, g);
                }
                if (items.size() >= MAX_BITMAPS) {
                    throw invalid("bitmap '%s': the image has %d bitmaps (expected: at most %d)", name, items.size(),
                            MAX_BITMAPS);
                }
                long dirBytes = directoryBytes + entryBytes(name);
                if (dirBytes > MAX_DIRECTORY_BYTES) {
                    throw invalid("bitmap '%s': bitmap directory of %d bytes (expected: at most %d)", name, dirBytes,
                            MAX_DIRECTORY_BYTES);
                }
                DirtyBitmap b;
                try {
                    b = DirtyBitmap.create(name, image.size(), g, enabled, true);
                } catch (IllegalArgumentException e) {
                    throw invalid("%s", e.getMessage());
                }
                long tableSize = BitmapCodec.tableSize(b.chunkCount(), image.clusterBits());
                if (tableSize << image.clusterBits() > (512L << 20)) {
                    throw invalid("bitmap '%s': %d bytes of bitmap data at granularity %d (expected: at most 512 MiB;"
                            + " use a coarser granularity)", name, tableSize << image.clusterBits(), g);
                }
                index(new Item(name, b, null, PersistentBitmaps.Status.USABLE, null));
                if (tracker != null) {
                    tracker.attach(b);
                }
                modified = true;
                return b;
            }
        });
    }

    /** Removes a bitmap (the only operation allowed on an inconsistent one). */
    public void remove(String name) throws IOException {
        atInstant(() -> {
            synchronized (this) {
                checkOpen();
                Item i = item(name, "remove");
                items.remove(i);
                byName.remove(i.name);
                directoryBytes -= entryBytes(i.name);
                if (i.onDisk != null) {
                    pendingFree.add(i.onDisk);
                }
                if (tracker != null && i.live != null) {
                    tracker.detach(i.live);
                }
                modified = true;
                return null;
            }
        });
    }

    /** Resets every bit. */
    public void clear(String name) throws IOException {
        atInstant(() -> {
            synchronized (this) {
                checkOpen();
                usable(item(name, "clear")).clear();
                modified = true;
                return null;
            }
        });
    }

    /** Starts or stops recording (the {@code auto} flag). */
    public void setEnabled(String name, boolean enabled) throws IOException {
        atInstant(() -> {
            synchronized (this) {
                checkOpen();
                usable(item(name, enabled ? "enable" : "disable")).setEnabled(enabled);
                modified = true;
                return null;
            }
        });
    }

    /**
     * ORs {@code source} (of this image or another of the same size, any granularity) into
     * {@code target}; on a refusal the target is unchanged.
     */
    public void merge(String target, DirtyBitmap source) throws IOException {
        atInstant(() -> {
            synchronized (this) {
                checkOpen();
                DirtyBitmap t = usable(item(target, "merge"));
                if (source.sizeBytes() != t.sizeBytes()) {
                    throw invalid("merge '%s' into '%s': source covers %d bytes (expected: %d, the image size)",
                            source.name(), target, source.sizeBytes(), t.sizeBytes());
                }
                t.merge(source);
                modified = true;
                return null;
            }
        });
    }

    // ---- persistence ----

    /**
     * Stores the bitmaps now (the control API's "flush bitmaps"; done after a checkpoint is created),
     * with in_use clear. In TRACKING mode this runs at an instant (guest changes wait until the store
     * is durable), and the next guest change sets in_use again before it reaches the image (see the
     * class notes): the image stays open for writes, and a crash before that change leaves the stored
     * bitmaps usable and exact.
     */
    public void flushBitmaps() throws IOException {
        if (mode != Mode.TRACKING) {
            synchronized (this) {
                checkOpen();
                store(false);
            }
            return;
        }
        atInstant(() -> {
            synchronized (this) {
                checkOpen();
                store(false);
                cleanOnDisk = true;
            }
            return null;
        });
    }

    /**
     * Called by {@link TrackingDevice} under the quiesce read lock before every guest change: after a
     * {@link #flushBitmaps}, the first change makes in_use durable again before it goes on.
     */
    void beforeGuestChange() throws IOException {
        if (cleanOnDisk) {
            synchronized (this) {
                if (cleanOnDisk && !closed) {
                    if (allOnDisk()) {
                        markInUse();
                    } else {
                        store(true);    // a bitmap added since the flush has no directory entry yet
                    }
                    cleanOnDisk = false;
                }
            }
        }
    }

    /**
     * Stores the bitmaps with in_use clear (TRACKING always; EDIT if anything changed) and stops; the
     * caller closes the image afterwards. If storing fails the on-disk bitmaps stay in_use, i.e.
     * inconsistent at the next open, as QEMU leaves them.
     */
    public synchronized void close() throws IOException {
        if (closed) {
            return;
        }
        closed = true;
        cleanOnDisk = false;
        if (mode == Mode.TRACKING || modified) {
            store(false);
        }
    }

    /** EDIT mode: forgets every change; nothing is written. */
    public synchronized void discard() {
        closed = true;
    }

    /** True once closed or discarded. */
    public synchronized boolean isClosed() {
        return closed;
    }

    private boolean allOnDisk() {
        for (Item i : items) {
            if (i.onDisk == null) {
                return false;
            }
        }
        return true;
    }

    /** Sets in_use on every loaded bitmap (a new directory, one header write), before any guest write. */
    private synchronized void markInUse() throws IOException {
        boolean needed = stale;
        List<PersistentBitmaps.Slot> slots = new ArrayList<>();
        for (Item i : items) {
            BitmapDirectoryEntry e = i.onDisk;
            if (i.live != null) {
                needed = true;
                e = new BitmapDirectoryEntry(e.tableOffset(), e.tableSize(),
                        e.flags() | BitmapDirectoryEntry.FLAG_IN_USE, e.type(), e.granularityBits(), e.name(),
                        e.extraData());
            }
            slots.add(PersistentBitmaps.Slot.kept(e));
        }
        if (!needed) {
            return;
        }
        PersistentBitmaps.Directory d = PersistentBitmaps.writeDirectory(storage, slots, true, List.of(), dirOffset,
                dirSize);
        adopt(d);
        storage.flush();
    }

    /** Writes the whole directory (new tables for live bitmaps), frees what it replaced. */
    private void store(boolean inUse) throws IOException {
        if (items.isEmpty() && pendingFree.isEmpty() && dirOffset == 0 && !stale) {
            return;
        }
        List<PersistentBitmaps.Slot> slots = new ArrayList<>();
        List<BitmapDirectoryEntry> freed = new ArrayList<>(pendingFree);
        for (Item i : items) {
            if (i.live != null) {
                slots.add(PersistentBitmaps.Slot.live(i.live));
                if (i.onDisk != null) {
                    freed.add(i.onDisk);
                }
            } else {
                slots.add(PersistentBitmaps.Slot.kept(i.onDisk));
            }
        }
        PersistentBitmaps.Directory d = PersistentBitmaps.writeDirectory(storage, slots, inUse, freed, dirOffset,
                dirSize);
        pendingFree.clear();
        adopt(d);
        storage.flush();
    }

    private void adopt(PersistentBitmaps.Directory d) {
        for (int k = 0; k < items.size(); k++) {
            items.get(k).onDisk = d.entries().get(k);
        }
        dirOffset = d.offset();
        dirSize = d.size();
        stale = false;
    }

    // ---- helpers ----

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException(image.name() + ": bitmaps closed");
        }
    }

    private void index(Item i) {
        items.add(i);
        byName.put(i.name, i);
        directoryBytes += entryBytes(i.name);
    }

    private Item item(String name, String op) throws BlockException {
        Item found = byName.get(name);
        if (found != null) {
            return found;
        }
        List<String> names = new ArrayList<>();
        for (Item i : items) {
            if (names.size() == 20) {
                names.add("...");
                break;
            }
            names.add(i.name);
        }
        throw invalid("%s bitmap '%s': not found (expected: one of the image's bitmaps: %s)", op, name,
                names.isEmpty() ? "none" : String.join(", ", names));
    }

    private DirtyBitmap usable(Item i) throws BlockException {
        if (i.live == null) {
            throw invalid("%s; only removing it is allowed", i.problem);
        }
        return i.live;
    }

    private void checkNewName(String name) throws BlockException {
        int bytes = name.getBytes(StandardCharsets.UTF_8).length;
        if (bytes < 1 || bytes > MAX_NAME_BYTES) {
            throw invalid("bitmap name of %d bytes (expected: 1..%d)", bytes, MAX_NAME_BYTES);
        }
        if (byName.containsKey(name)) {
            throw invalid("bitmap '%s': already exists (expected: a new name)", name);
        }
    }

    /** Directory entry size: round_up(24 + name, 8). */
    private static long entryBytes(String name) {
        return (24L + name.getBytes(StandardCharsets.UTF_8).length + 7) & ~7L;
    }

    private BlockException invalid(String format, Object... args) {
        return BlockException.invalid(image.name(), -1, format, args);
    }

    /** TrackingDevice.close: store (in_use cleared), then close the image even if storing failed. */
    void closeWithImage() throws IOException {
        IOException failure = null;
        try {
            close();
        } catch (IOException e) {
            failure = e;
        }
        try {
            image.close();
        } catch (IOException e) {
            failure = IoFailures.add(failure, e);
        }
        if (failure != null) {
            throw failure;
        }
    }
}
