package dev.shear.qcow2;

/**
 * Named bounds on every length, count and offset read from a qcow2 image (qcow2-format.md §13).
 * Each is checked before anything is allocated or read (style.md §8.1); each says why it exists.
 * Per-bitmap limits live in {@code dev.shear.qcow2.bitmap.BitmapLimits}.
 */
final class Qcow2Limits {
    /** Smallest cluster: 512 bytes, one sector. Same as QEMU MIN_CLUSTER_BITS. */
    static final int MIN_CLUSTER_BITS = 9;
    /** Largest cluster: 2 MiB. Same as QEMU MAX_CLUSTER_BITS; keeps cluster 0 and L2 tables small. */
    static final int MAX_CLUSTER_BITS = 21;
    /** Extended L2 splits a cluster into 32 subclusters that must be >= 512 bytes (QEMU check). */
    static final int MIN_EXTL2_CLUSTER_BITS = 14;
    /** Refcounts are at most 64 bits wide. Same as QEMU ("may not exceed 64 bits"). */
    static final int MAX_REFCOUNT_ORDER = 6;
    /** Active or snapshot L1 table at most 32 MiB. Same as QEMU QCOW_MAX_L1_SIZE. */
    static final long MAX_L1_BYTES = 32L << 20;
    /** {@link #MAX_L1_BYTES} in 8-byte entries (4 Mi). */
    static final int MAX_L1_ENTRIES = (int) (MAX_L1_BYTES / 8);
    /** Refcount table at most 8 MiB. Same as QEMU QCOW_MAX_REFTABLE_SIZE. */
    static final long MAX_REFTABLE_BYTES = 8L << 20;
    /** QEMU refuses sizes whose L1 index does not fit an int ("Image is too big"). */
    static final long MAX_L1_INDEX = Integer.MAX_VALUE;
    /** At most 65536 internal snapshots. Same as QEMU QCOW_MAX_SNAPSHOTS. */
    static final int MAX_SNAPSHOTS = 65536;
    /** Whole snapshot table at most 64 MiB. Same as QEMU QCOW_MAX_SNAPSHOTS_SIZE. */
    static final long MAX_SNAPSHOT_TABLE_BYTES = 64L << 20;
    /** Extra data per snapshot entry at most 1 KiB. Same as QEMU QCOW_MAX_SNAPSHOT_EXTRA_DATA. */
    static final int MAX_SNAPSHOT_EXTRA = 1024;
    /** Backing file name at most 1023 bytes (QEMU's 1024-byte buffer with its terminator). */
    static final int MAX_BACKING_NAME = 1023;
    /** Backing format name shorter than 16 bytes (QEMU's 16-byte buffer with its terminator). */
    static final int MAX_BACKING_FORMAT = 15;
    /** At most 65535 persistent bitmaps. Same as QEMU QCOW2_MAX_BITMAPS. */
    static final int MAX_BITMAPS = 65535;
    /** Bitmap directory at most 1024 bytes per bitmap. Same as QEMU QCOW2_MAX_BITMAP_DIRECTORY_SIZE. */
    static final long MAX_BITMAP_DIRECTORY_BYTES = 1024L * MAX_BITMAPS;

    /** Length of a version 2 header; also where its extensions start. */
    static final int V2_HEADER_LENGTH = 72;
    /** Smallest version 3 header_length (QEMU: "qcow2 header too short"). */
    static final int V3_MIN_HEADER_LENGTH = 104;
    /** header_length QEMU 7.2 writes: the 104 mandatory bytes, compression_type and padding. */
    static final int V3_HEADER_LENGTH = 112;
    /** The fixed 40-byte part of a snapshot table entry (QEMU sizeof(QCowSnapshotHeader)). */
    static final int SNAPSHOT_HEADER_BYTES = 40;

    private Qcow2Limits() {
    }
}
