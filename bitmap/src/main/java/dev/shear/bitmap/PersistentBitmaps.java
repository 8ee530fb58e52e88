package dev.shear.bitmap;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import dev.shear.qcow2.BitmapsExtension;
import dev.shear.qcow2.Qcow2Header;
import dev.shear.qcow2.Qcow2Image;
import dev.shear.qcow2.bitmap.BitmapDirectory;
import dev.shear.qcow2.bitmap.BitmapDirectoryEntry;
import dev.shear.qcow2.bitmap.BitmapTable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The persistent dirty bitmaps of one qcow2 image, loaded as QEMU loads them at open
 * (dirty-bitmaps.md §4.1) and stored as QEMU stores them at close (§4.3).
 *
 * <h2>Load rules</h2>
 * <ul>
 *   <li>No bitmaps extension: no bitmaps.</li>
 *   <li>Extension present but autoclear bit 0 clear (a program without bitmap support wrote the
 *       image, or a store crashed): every bitmap is INCONSISTENT. QEMU drops them silently from
 *       view; we still list them (best effort: if the stale directory no longer decodes, nothing is
 *       listed) so that the user learns why a checkpoint vanished, and {@link #warning()} says so.</li>
 *   <li>in_use set: INCONSISTENT, data not read; never exported or merged; the next backup must be
 *       full.</li>
 *   <li>Unknown extra data without flag bit 2: UNSUPPORTED (kept, not used; QEMU refuses the image).</li>
 *   <li>Otherwise USABLE: table and data read; enabled iff {@code auto}.</li>
 * </ul>
 * A directory or table that breaks QEMU's rules fails the whole load, as QEMU fails the open.
 *
 * <h2>Invariant</h2>
 * An entry has a {@link DirtyBitmap} if and only if its status is USABLE.
 */
public final class PersistentBitmaps {
    /** What can be done with a bitmap found in the image. */
    public enum Status {
        /** Loaded; may be exported, merged and used for incremental backups. */
        USABLE,
        /** in_use, or autoclear bit 0 clear: contents untrustworthy; only removal is allowed. */
        INCONSISTENT,
        /** Extra data the spec forbids us to interpret: preserved, not used. */
        UNSUPPORTED
    }

    /**
     * One bitmap of the image.
     *
     * @param name        bitmap name
     * @param granularity bytes per bit
     * @param flags       on-disk flags (in_use, auto)
     * @param status      what may be done with it
     * @param problem     why it is not USABLE (a sentence for the user), or null
     * @param bitmap      the contents, present exactly when USABLE
     * @param entry       the directory entry as read (for carrying inconsistent entries over on store)
     */
    public record Entry(String name, long granularity, int flags, Status status, String problem, DirtyBitmap bitmap,
            BitmapDirectoryEntry entry) {
        public boolean inUse() {
            return (flags & BitmapDirectoryEntry.FLAG_IN_USE) != 0;
        }

        public boolean auto() {
            return (flags & BitmapDirectoryEntry.FLAG_AUTO) != 0;
        }
    }

    private final String resource;
    private final List<Entry> entries;
    private final String warning;

    private PersistentBitmaps(String resource, List<Entry> entries, String warning) {
        this.resource = resource;
        this.entries = List.copyOf(entries);
        this.warning = warning;
    }

    /** The bitmaps of the active image (bitmaps belong to it, not to internal snapshots). */
    public static PersistentBitmaps load(Qcow2Image image) throws IOException {
        if (image.openedSnapshot() != null) {
            return new PersistentBitmaps(image.name(), List.of(), null);
        }
        return load(image.file(), image.header(), image.name());
    }

    /** Loads from an image file whose header was decoded; reads directory, tables and data. */
    public static PersistentBitmaps load(ImageFile file, Qcow2Header header, String resource) throws IOException {
        BitmapsExtension ext = header.bitmapsExtension();
        if (ext == null) {
            return new PersistentBitmaps(resource, List.of(), null);
        }
        if (!header.bitmapsConsistent()) {
            return loadStale(file, header, ext, resource);
        }
        List<BitmapDirectoryEntry> dir = BitmapDirectory.read(file, header, resource);
        List<Entry> out = new ArrayList<>(dir.size());
        int clusterBits = header.clusterBits();
        for (BitmapDirectoryEntry e : dir) {
            if (e.inUse()) {
                out.add(new Entry(e.name(), e.granularity(), e.flags(), Status.INCONSISTENT, inUseProblem(e.name()),
                        null, e));
            } else if (!e.usable()) {
                out.add(new Entry(e.name(), e.granularity(), e.flags(), Status.UNSUPPORTED, "bitmap '" + e.name()
                        + "': " + e.extraData().length + " bytes of unknown extra data (expected: none); it is kept "
                        + "but cannot be used", null, e));
            } else {
                long[] table = BitmapTable.read(file, e, clusterBits, resource);
                DirtyBitmap b = BitmapCodec.decode(e.name(), header.size(), e.granularityBits(), e.auto(), true, table,
                        clusterBits, file::read, resource);
                out.add(new Entry(e.name(), e.granularity(), e.flags(), Status.USABLE, null, b, e));
            }
        }
        return new PersistentBitmaps(resource, out, null);
    }

    /** Autoclear bit 0 clear: list what the stale directory names, all INCONSISTENT, never fail. */
    private static PersistentBitmaps loadStale(ImageFile file, Qcow2Header header, BitmapsExtension ext,
            String resource) {
        String warning = "autoclear bit 0 (bitmaps) is clear: a program lacking bitmap support modified this "
                + "image, so all its bitmaps are inconsistent and the next backup must be full";
        List<Entry> out = new ArrayList<>();
        try {
            long size = ext.directorySize();
            long offset = ext.directoryOffset();
            if (size > 0 && size <= 1024L * 65535 && offset > 0 && ext.nbBitmaps() > 0) {
                ByteBuffer dir = ByteBuffer.allocate((int) size);
                file.read(offset, dir);
                for (BitmapDirectoryEntry e : BitmapDirectory.decode(dir.flip(), ext, header.size(),
                        header.clusterBits(), resource)) {
                    out.add(new Entry(e.name(), e.granularity(), e.flags(), Status.INCONSISTENT, "bitmap '" + e.name()
                            + "': inconsistent (" + warning + ")", null, e));
                }
            }
        } catch (IOException | RuntimeException e) {
            // The directory is stale by definition; what it says is a courtesy, not a requirement.
            out.clear();
        }
        return new PersistentBitmaps(resource, out, warning);
    }

    private static String inUseProblem(String name) {
        return "bitmap '" + name + "': inconsistent (in_use flag set: the image was not closed cleanly while the "
                + "bitmap recorded writes) and cannot be used; the next backup must be full";
    }

    /** Every bitmap in directory order, whatever its status. */
    public List<Entry> entries() {
        return entries;
    }

    /** A warning about the image as a whole (autoclear bit clear), or null. */
    public String warning() {
        return warning;
    }

    /** The entry named {@code name}, or null. */
    public Entry find(String name) {
        for (Entry e : entries) {
            if (e.name().equals(name)) {
                return e;
            }
        }
        return null;
    }

    /**
     * The usable bitmap named {@code name}, for export or backup.
     *
     * @throws BlockException INVALID_ARGUMENT, one line naming the bitmap: not found (listing the
     *         names there are), or inconsistent / unsupported (saying why)
     */
    public DirtyBitmap require(String name) throws BlockException {
        Entry e = find(name);
        if (e == null) {
            List<String> names = new ArrayList<>();
            for (Entry x : entries) {
                names.add(x.name());
            }
            throw BlockException.invalid(resource, -1, "bitmap '%s': not found (expected: one of the image's "
                    + "bitmaps: %s)", name, names.isEmpty() ? "none" : String.join(", ", names));
        }
        if (e.status() != Status.USABLE) {
            throw BlockException.invalid(resource, -1, "%s", e.problem());
        }
        return e.bitmap();
    }

    // ---- store (served by the write engine through BitmapStorage) ----

    /**
     * Stores {@code bitmaps} as the image's new bitmap set, QEMU's close-time protocol (see
     * {@link BitmapStorage} for the exact order). Inconsistent and unsupported entries of
     * {@code previous} are carried over unchanged (QEMU keeps them until removed); everything else of
     * {@code previous} is freed after the commit. New flags: {@code auto} if enabled, in_use clear.
     *
     * @param previous the bitmaps as loaded at open (may be empty)
     * @param bitmaps  persistent bitmaps to store, each covering {@link BitmapStorage#imageSize()}
     * @param oldDirectoryOffset offset of the directory being replaced, 0 if none
     * @param oldDirectorySize   its size in bytes
     */
    public static void store(BitmapStorage storage, PersistentBitmaps previous, List<DirtyBitmap> bitmaps,
            long oldDirectoryOffset, long oldDirectorySize) throws IOException {
        List<Slot> slots = new ArrayList<>();
        for (DirtyBitmap b : bitmaps) {
            slots.add(Slot.live(b));
        }
        List<BitmapDirectoryEntry> freed = new ArrayList<>();
        for (Entry e : previous.entries()) {
            if (e.status() != Status.USABLE) {
                slots.add(Slot.kept(e.entry()));
            } else {
                freed.add(e.entry());
            }
        }
        writeDirectory(storage, slots, false, freed, oldDirectoryOffset, oldDirectorySize);
    }

    /**
     * One directory position: a live bitmap (new data clusters and table are written for it) or an
     * entry kept verbatim (its table and data stay where they are: inconsistent or unsupported
     * bitmaps carried over, or a live bitmap's current on-disk entry when only its flags change).
     */
    public record Slot(DirtyBitmap live, BitmapDirectoryEntry kept) {
        public static Slot live(DirtyBitmap b) {
            return new Slot(b, null);
        }

        public static Slot kept(BitmapDirectoryEntry e) {
            return new Slot(null, e);
        }

        String name() {
            return live != null ? live.name() : kept.name();
        }
    }

    /**
     * The directory as committed.
     *
     * @param entries the entries, one per slot, in slot order
     * @param offset  directory offset, 0 when there are no bitmaps
     * @param size    directory size in bytes
     */
    public record Directory(List<BitmapDirectoryEntry> entries, long offset, long size) {
        public static final Directory NONE = new Directory(List.of(), 0, 0);
    }

    /**
     * The store protocol of {@link BitmapStorage} for an arbitrary directory, in {@code slots} order
     * (QEMU keeps the directory order and appends new bitmaps). New flags of live bitmaps: {@code auto}
     * if enabled, plus {@code in_use} when {@code inUse} (a store while the image stays open read-write
     * for tracking: what is on disk is a snapshot, not the truth after a crash). After the commit, the
     * tables and data of {@code freed} and the old directory are freed.
     */
    public static Directory writeDirectory(BitmapStorage storage, List<Slot> slots, boolean inUse,
            List<BitmapDirectoryEntry> freed, long oldDirectoryOffset, long oldDirectorySize) throws IOException {
        int clusterBits = storage.clusterBits();
        int clusterSize = 1 << clusterBits;
        Set<String> names = new HashSet<>();
        for (Slot s : slots) {
            if (s.kept() != null && !names.add(s.kept().name())) {
                throw BlockException.invalid(storage.resource(), -1, "bitmap '%s': name already used "
                        + "(expected: unique)", s.kept().name());
            }
        }
        for (Slot s : slots) {
            if (s.live() != null) {
                checkStorable(s.live(), storage, names);
            }
        }
        List<BitmapDirectoryEntry> dir = new ArrayList<>();
        for (Slot s : slots) {
            if (s.kept() != null) {
                dir.add(s.kept());
                continue;
            }
            DirtyBitmap b = s.live();
            long[] table = BitmapCodec.encode(b, clusterBits, (index, cluster) -> {
                long host = storage.allocate(1);
                storage.write(host, cluster);
                return host;
            });
            int tableClusters = (int) (((long) table.length * 8 + clusterSize - 1) >>> clusterBits);
            long tableOffset = storage.allocate(tableClusters);
            storage.write(tableOffset, BitmapTable.encode(table));
            int flags = (b.isEnabled() ? BitmapDirectoryEntry.FLAG_AUTO : 0)
                    | (inUse ? BitmapDirectoryEntry.FLAG_IN_USE : 0);
            dir.add(new BitmapDirectoryEntry(tableOffset, table.length, flags, BitmapDirectoryEntry.TYPE_DIRTY_TRACKING,
                    b.granularityBits(), b.name(), null));
        }
        storage.flush();
        long dirOffset = 0;
        long dirSize = 0;
        if (!dir.isEmpty()) {
            ByteBuffer encoded = BitmapDirectory.encode(dir);
            dirSize = encoded.remaining();
            dirOffset = storage.allocate((int) ((dirSize + clusterSize - 1) >>> clusterBits));
            storage.write(dirOffset, encoded);
        }
        storage.commitDirectory(dir.size(), dirOffset, dirSize);
        freeOld(storage, freed, oldDirectoryOffset, oldDirectorySize);
        return new Directory(List.copyOf(dir), dirOffset, dirSize);
    }

    /** QEMU's store-time constraints (§4.3 step 1), before anything is allocated. */
    private static void checkStorable(DirtyBitmap b, BitmapStorage storage, Set<String> names) throws BlockException {
        String r = storage.resource();
        if (!b.isPersistent()) {
            throw BlockException.invalid(r, -1, "bitmap '%s': transient (expected: persistent to be stored)",
                    b.name());
        }
        int nameBytes = b.name().getBytes(StandardCharsets.UTF_8).length;
        if (nameBytes < 1 || nameBytes > 1023) {
            throw BlockException.invalid(r, -1, "bitmap '%s': name of %d bytes (expected: 1..1023)", b.name(),
                    nameBytes);
        }
        if (b.sizeBytes() != storage.imageSize()) {
            throw BlockException.invalid(r, -1, "bitmap '%s': size %d (expected: %d, the image size)", b.name(),
                    b.sizeBytes(), storage.imageSize());
        }
        long tableSize = BitmapCodec.tableSize(b.chunkCount(), storage.clusterBits());
        if (tableSize > 0x8000000L || tableSize << storage.clusterBits() > (512L << 20)) {
            throw BlockException.invalid(r, -1, "bitmap '%s': %d table entries (expected: <= 512 MiB of bitmap "
                    + "data)", b.name(), tableSize);
        }
        if (!names.add(b.name())) {
            throw BlockException.invalid(r, -1, "bitmap '%s': name already used (expected: unique)", b.name());
        }
    }

    /** Frees the replaced structures: old directory, and tables + data of bitmaps that were USABLE. */
    private static void freeOld(BitmapStorage storage, List<BitmapDirectoryEntry> freed, long dirOffset, long dirSize)
            throws IOException {
        for (BitmapDirectoryEntry d : freed) {
            freeBitmap(storage, d);
        }
        if (dirOffset != 0 && dirSize > 0) {
            int clusterBits = storage.clusterBits();
            long clusterSize = 1L << clusterBits;
            storage.free(dirOffset, (int) ((dirSize + clusterSize - 1) >>> clusterBits));
        }
    }

    /**
     * Frees one bitmap's data clusters and table (after a directory without it was committed). Table
     * entries that are not plain data offsets (all-ones, reserved bits) own no cluster.
     */
    public static void freeBitmap(BitmapStorage storage, BitmapDirectoryEntry d) throws IOException {
        int clusterBits = storage.clusterBits();
        long clusterSize = 1L << clusterBits;
        int n = d.tableSize();
        ByteBuffer t = ByteBuffer.allocate(n * 8);
        storage.read(d.tableOffset(), t);
        for (int i = 0; i < n; i++) {
            long e = t.getLong(i * 8);
            if ((e & BitmapTable.RESERVED_MASK) == 0) {
                long host = BitmapTable.dataOffset(e);
                if (host != 0) {
                    storage.free(host, 1);
                }
            }
        }
        storage.free(d.tableOffset(), (int) ((n * 8L + clusterSize - 1) >>> clusterBits));
    }
}
