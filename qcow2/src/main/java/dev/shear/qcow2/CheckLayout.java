package dev.shear.qcow2;

import java.util.List;

/**
 * The parts of an image's layout that {@link Qcow2Check} walks, already decoded: header fields, the
 * snapshot list and the bitmap directory. Kept apart from the decoders so that the walk can be tested
 * on layouts that the decoders would refuse (qcow2-format.md §2, §8; dirty-bitmaps.md §2).
 *
 * @param version              2 or 3
 * @param clusterBits          9..21
 * @param refcountOrder        0..6
 * @param virtualSize          guest size in bytes
 * @param l1TableOffset        active L1 table
 * @param l1Size               active L1 entries
 * @param refcountTableOffset  refcount table
 * @param refcountTableEntries {@code refcount_table_clusters * cluster_size / 8}
 * @param extendedL2           incompatible bit 4: 16-byte L2 entries with a subcluster bitmap
 * @param externalData         incompatible bit 2: guest data is not in this file (not refcounted)
 * @param cryptoHeaderOffset   FDE header extension offset, 0 if none
 * @param cryptoHeaderLength   FDE header extension length, 0 if none
 * @param snapshotsOffset      snapshot table offset (0 if none)
 * @param snapshotsSize        bytes of the snapshot table (sum of its padded entries)
 * @param snapshots            the snapshot entries, in table order
 * @param bitmaps              the bitmaps the check counts; null without a bitmaps extension or when
 *                             autoclear bit 0 is clear (then QEMU ignores them)
 */
record CheckLayout(int version, int clusterBits, int refcountOrder, long virtualSize, long l1TableOffset,
        int l1Size, long refcountTableOffset, long refcountTableEntries, boolean extendedL2,
        boolean externalData, long cryptoHeaderOffset, long cryptoHeaderLength, long snapshotsOffset,
        long snapshotsSize, List<SnapshotRef> snapshots, Bitmaps bitmaps) {

    CheckLayout {
        snapshots = List.copyOf(snapshots);
    }

    /** One snapshot table entry, as far as the check needs it. */
    record SnapshotRef(String id, String name, long l1TableOffset, long l1Size, int extraDataSize) {
    }

    /**
     * The bitmaps extension and its directory.
     *
     * @param directoryOffset bitmap directory offset
     * @param directorySize   bitmap directory bytes
     * @param tables          one entry per bitmap; null when the directory could not be loaded
     * @param directoryError  why the directory could not be loaded, or null
     */
    record Bitmaps(long directoryOffset, long directorySize, List<BitmapRef> tables, String directoryError) {
    }

    /** One bitmap's table: where it is, how many 8-byte entries it has, and the in_use flag. */
    record BitmapRef(String name, long tableOffset, long tableEntries, boolean inUse) {
    }

    int clusterSize() {
        return 1 << clusterBits;
    }

    int refcountBits() {
        return 1 << refcountOrder;
    }

    /** Bytes of one L2 entry: 16 with extended L2, else 8. */
    int l2EntryBytes() {
        return extendedL2 ? 16 : 8;
    }

    /** Entries of one L2 table. */
    int l2Entries() {
        return clusterSize() / l2EntryBytes();
    }
}
