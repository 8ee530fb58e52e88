package dev.shear.qcow2;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import dev.shear.qcow2.bitmap.BitmapTable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Builds the {@link CheckLayout} of an image from its decoded header, reading the snapshot table and
 * the bitmap directory the way QEMU does when it opens an image for {@code qemu-img check}
 * (qcow2-format.md §8, dirty-bitmaps.md §2.2; QEMU {@code qcow2_check_read_snapshot_table},
 * {@code bitmap_list_load}, {@code check_dir_entry}).
 *
 * <p>Design note: these readers are deliberately more tolerant than the engine's decoders
 * ({@link SnapshotTable}, which refuses a damaged entry at open): the check must get past a snapshot
 * entry with a misaligned L1 table, or a bitmap directory QEMU would not load, in order to report them
 * as corruptions, exactly where and as QEMU does. Only what QEMU's check itself cannot get past stops
 * the check ({@link Qcow2Check.CheckFailed}).
 */
final class CheckLayouts {
    /** QEMU QCOW_MAX_SNAPSHOT_EXTRA_DATA. */
    static final int MAX_SNAPSHOT_EXTRA = 1024;
    /** QEMU QCOW_MAX_SNAPSHOTS_SIZE: 64 MiB of snapshot table. */
    static final long MAX_SNAPSHOTS_BYTES = 64L << 20;
    /** QEMU QCOW_MAX_SNAPSHOTS. */
    static final int MAX_SNAPSHOTS = 65536;
    /** Fixed part of a snapshot table entry. */
    static final int SNAPSHOT_HEADER_BYTES = 40;
    /** QEMU QCOW2_MAX_BITMAP_DIRECTORY_SIZE. */
    static final long MAX_BITMAP_DIRECTORY_BYTES = 1024L * 65535;
    /** Fixed part of a bitmap directory entry. */
    static final int BITMAP_ENTRY_HEADER_BYTES = 24;
    /** QEMU BME_MAX_TABLE_SIZE: entries of one bitmap table. */
    static final long BME_MAX_TABLE_SIZE = 0x8000000L;
    /** QEMU BME_MAX_PHYS_SIZE: 512 MiB of bitmap data. */
    static final long BME_MAX_PHYS_SIZE = 0x20000000L;
    /** Flags other than in_use (bit 0) and auto (bit 1): QEMU refuses them. */
    static final int BME_RESERVED_FLAGS = 0xfffffffc;
    static final int BME_MIN_GRANULARITY_BITS = 9;
    static final int BME_MAX_GRANULARITY_BITS = 31;
    static final int BME_MAX_NAME_SIZE = 1023;
    /** Bitmap type 1: dirty tracking. */
    static final int BT_DIRTY_TRACKING_BITMAP = 1;
    /** Bitmap table entries read at a time. */
    static final int BITMAP_CHUNK_ENTRIES = 4096;

    private CheckLayouts() {
    }

    /** The layout of the image with header {@code h}; snapshot-table findings go to {@code report}. */
    static CheckLayout read(ImageFile file, Qcow2Header h, String resource, CheckReport report) throws IOException,
            Qcow2Check.CheckFailed {
        long clusterSize = h.clusterSize();
        List<CheckLayout.SnapshotRef> snapshots = new ArrayList<>();
        long snapshotsSize = readSnapshots(file, h, report, snapshots);
        CheckLayout.Bitmaps bitmaps = null;
        BitmapsExtension ext = h.bitmapsExtension();
        if (ext != null && h.bitmapsConsistent()) {
            bitmaps = readBitmaps(file, h, ext);
            checkLoadableAtOpen(file, h, bitmaps, resource);
        }
        long refcountTableEntries = Integer.toUnsignedLong(h.refcountTableClusters()) * clusterSize / 8;
        // Encryption is refused by the header decoder, so there is never an FDE header to count.
        return new CheckLayout(h.version(), h.clusterBits(), h.refcountOrder(), h.size(), h.l1TableOffset(),
                h.l1Size(), h.refcountTableOffset(), refcountTableEntries,
                h.hasExtendedL2(), (h.incompatibleFeatures() & FeatureBits.INCOMPAT_DATA_FILE) != 0, 0, 0,
                h.snapshotsOffset(), snapshotsSize, snapshots, bitmaps);
    }

    /**
     * Reads the snapshot entries into {@code out} and returns the table's size in bytes (QEMU
     * {@code snapshots_size}: up to the end of the last entry, without its padding).
     */
    private static long readSnapshots(ImageFile file, Qcow2Header h, CheckReport report,
            List<CheckLayout.SnapshotRef> out) throws IOException, Qcow2Check.CheckFailed {
        long count = Integer.toUnsignedLong(h.nbSnapshots());
        long start = h.snapshotsOffset();
        if (count > MAX_SNAPSHOTS) {
            report.checkErrors++;
            report.say("ERROR snapshot table too large");
            throw new Qcow2Check.CheckFailed("File too large");
        }
        if (start < 0 || Long.MAX_VALUE - count * SNAPSHOT_HEADER_BYTES < start
                || (start & (h.clusterSize() - 1)) != 0) {
            report.checkErrors++;
            report.say("ERROR snapshot table offset invalid");
            throw new Qcow2Check.CheckFailed("Invalid argument");
        }
        long offset = start;
        ByteBuffer fixed = ByteBuffer.allocate(SNAPSHOT_HEADER_BYTES);
        for (int i = 0; i < count; i++) {
            offset = (offset + 7) & ~7L;
            fixed.clear();
            file.read(offset, fixed);
            fixed.flip();
            offset += SNAPSHOT_HEADER_BYTES;
            long l1Offset = fixed.getLong(0);
            long l1Size = Integer.toUnsignedLong(fixed.getInt(8));
            int idSize = Short.toUnsignedInt(fixed.getShort(12));
            int nameSize = Short.toUnsignedInt(fixed.getShort(14));
            long extraSize = Integer.toUnsignedLong(fixed.getInt(36));
            if (extraSize > MAX_SNAPSHOT_EXTRA) {
                report.checkErrors++;
                report.say("ERROR failed to read the snapshot table: Too much extra metadata in snapshot table "
                        + "entry %d", i);
                report.say("You can force-remove this extra metadata with qemu-img check -r all");
                throw new Qcow2Check.CheckFailed("File too large");
            }
            offset += extraSize;
            // id and name: at most 2 * 65535 bytes, bounded by the 16-bit size fields.
            ByteBuffer names = ByteBuffer.allocate(idSize + nameSize);
            file.read(offset, names);
            offset += idSize + nameSize;
            if (offset - start > MAX_SNAPSHOTS_BYTES) {
                report.checkErrors++;
                report.say("ERROR failed to read the snapshot table: Snapshot table is too big");
                report.say("You can force-remove all %d overhanging snapshots with qemu-img check -r all", count - i);
                throw new Qcow2Check.CheckFailed("File too large");
            }
            byte[] bytes = names.array();
            String id = new String(bytes, 0, idSize, StandardCharsets.UTF_8);
            String name = new String(bytes, idSize, nameSize, StandardCharsets.UTF_8);
            out.add(new CheckLayout.SnapshotRef(id, name, l1Offset, l1Size, (int) extraSize));
        }
        return offset - start;
    }

    /**
     * Loads the bitmap directory as QEMU's {@code bitmap_list_load} does; a directory QEMU would not
     * load yields {@code tables == null} with the reason.
     *
     * <p>On entry: the header decoder bounded {@code directorySize} (≤ 1024 × 65535 bytes) and
     * {@code nbBitmaps} when autoclear bit 0 is set; checked again before allocating.
     */
    private static CheckLayout.Bitmaps readBitmaps(ImageFile file, Qcow2Header h, BitmapsExtension ext)
            throws IOException {
        long dirOffset = ext.directoryOffset();
        long dirSize = ext.directorySize();
        if (dirSize == 0 || dirSize < 0 || dirSize > MAX_BITMAP_DIRECTORY_BYTES) {
            return new CheckLayout.Bitmaps(dirOffset, dirSize, null, "bitmap directory size: " + dirSize);
        }
        ByteBuffer dir = ByteBuffer.allocate((int) dirSize);
        file.read(dirOffset, dir);
        dir.flip();
        List<CheckLayout.BitmapRef> tables = new ArrayList<>();
        long expected = Integer.toUnsignedLong(ext.nbBitmaps());
        int pos = 0;
        while (pos < dirSize) {
            if (pos + BITMAP_ENTRY_HEADER_BYTES > dirSize) {
                return broken(dirOffset, dirSize, "Broken bitmap directory");
            }
            if (tables.size() + 1 > expected) {
                return broken(dirOffset, dirSize, "More bitmaps found than specified in header extension");
            }
            long tableOffset = dir.getLong(pos);
            long tableSize = Integer.toUnsignedLong(dir.getInt(pos + 8));
            int flags = dir.getInt(pos + 12);
            int type = dir.get(pos + 16) & 0xff;
            int granularityBits = dir.get(pos + 17) & 0xff;
            int nameSize = Short.toUnsignedInt(dir.getShort(pos + 18));
            long extraSize = Integer.toUnsignedLong(dir.getInt(pos + 20));
            long entrySize = (BITMAP_ENTRY_HEADER_BYTES + extraSize + nameSize + 7) & ~7L;
            if (pos + entrySize > dirSize) {
                return broken(dirOffset, dirSize, "Broken bitmap directory");
            }
            if (extraSize != 0) {
                return broken(dirOffset, dirSize, "Bitmap extra data is not supported");
            }
            String name = new String(dir.array(), pos + BITMAP_ENTRY_HEADER_BYTES, nameSize, StandardCharsets.UTF_8);
            boolean bad = tableSize == 0 || tableOffset == 0 || (tableOffset & (h.clusterSize() - 1)) != 0
                    || tableSize > BME_MAX_TABLE_SIZE || granularityBits > BME_MAX_GRANULARITY_BITS
                    || granularityBits < BME_MIN_GRANULARITY_BITS || (flags & BME_RESERVED_FLAGS) != 0
                    || nameSize > BME_MAX_NAME_SIZE || type != BT_DIRTY_TRACKING_BITMAP;
            if (!bad) {
                long physBytes = tableSize * h.clusterSize();
                // (phys * 8) << granularity fits in 64 unsigned bits: phys <= 2^29, granularity <= 31.
                bad = physBytes > BME_MAX_PHYS_SIZE
                        || Long.compareUnsigned(h.size(), (physBytes * 8) << granularityBits) > 0;
            }
            if (bad) {
                return broken(dirOffset, dirSize, "Bitmap '" + name + "' doesn't satisfy the constraints");
            }
            tables.add(new CheckLayout.BitmapRef(name, tableOffset, tableSize, (flags & 1) != 0));
            pos += (int) entrySize;
        }
        if (tables.size() != expected) {
            return broken(dirOffset, dirSize, "Less bitmaps found than specified in header extension");
        }
        return new CheckLayout.Bitmaps(dirOffset, dirSize, tables, null);
    }

    /**
     * QEMU loads the bitmap directory, and the table of every bitmap not in use, when it opens the
     * image, so a broken one makes {@code qemu-img check} fail before checking ("Could not open"); the
     * same happens here, with QEMU's words. A bad table of an in-use bitmap is left to the check.
     */
    private static void checkLoadableAtOpen(ImageFile file, Qcow2Header h, CheckLayout.Bitmaps bitmaps,
            String resource) throws IOException {
        if (bitmaps.tables() == null) {
            throw BlockException.format(resource, bitmaps.directoryOffset(), "%s", bitmaps.directoryError());
        }
        for (CheckLayout.BitmapRef bm : bitmaps.tables()) {
            if (!bm.inUse() && !bitmapTableValid(file, bm, h.clusterSize())) {
                throw BlockException.format(resource, bm.tableOffset(),
                        "Could not read bitmap_table table from image for bitmap '%s': Invalid argument", bm.name());
            }
        }
    }

    /**
     * True if every entry of the table is well-formed (QEMU {@code check_table_entry}): no reserved
     * bits; with a data offset, a cluster-aligned one and no "all ones" flag. Read chunk by chunk.
     */
    static boolean bitmapTableValid(ImageFile file, CheckLayout.BitmapRef bm, long clusterSize) {
        int clusterBits = Long.numberOfTrailingZeros(clusterSize);
        ByteBuffer chunk = ByteBuffer.allocate(8 * (int) Math.min(bm.tableEntries(), BITMAP_CHUNK_ENTRIES));
        for (long base = 0; base < bm.tableEntries(); base += BITMAP_CHUNK_ENTRIES) {
            int n = (int) Math.min(BITMAP_CHUNK_ENTRIES, bm.tableEntries() - base);
            chunk.clear().limit(n * 8);
            try {
                file.read(bm.tableOffset() + base * 8, chunk);
            } catch (IOException e) {
                return false;
            }
            for (int i = 0; i < n; i++) {
                if (BitmapTable.problem(chunk.getLong(i * 8), clusterBits) != null) {
                    return false;
                }
            }
        }
        return true;
    }

    private static CheckLayout.Bitmaps broken(long dirOffset, long dirSize, String why) {
        return new CheckLayout.Bitmaps(dirOffset, dirSize, null, why);
    }
}
