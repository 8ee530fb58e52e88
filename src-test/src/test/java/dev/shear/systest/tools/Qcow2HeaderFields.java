package dev.shear.systest.tools;

import java.nio.ByteBuffer;

/**
 * The qcow2 header fields tests need to compute where to damage an image (qcow2-format.md §2), read
 * independently of the engine so that a bug there cannot hide a bug here. v2 headers get the implicit
 * v3 values (refcount_order 4, header_length 72).
 */
public record Qcow2HeaderFields(
        int version,
        long backingFileOffset,
        int backingFileSize,
        int clusterBits,
        long size,
        int cryptMethod,
        int l1Size,
        long l1TableOffset,
        long refcountTableOffset,
        int refcountTableClusters,
        int nbSnapshots,
        long snapshotsOffset,
        long incompatibleFeatures,
        long compatibleFeatures,
        long autoclearFeatures,
        int refcountOrder,
        int headerLength) {

    public static final int MAGIC = 0x514649fb;

    /** Byte offsets of the header fields (qcow2-format.md §2.1, §2.2). */
    public static final long OFF_VERSION = 4;
    public static final long OFF_BACKING_FILE_OFFSET = 8;
    public static final long OFF_CLUSTER_BITS = 20;
    public static final long OFF_SIZE = 24;
    public static final long OFF_L1_SIZE = 36;
    public static final long OFF_L1_TABLE_OFFSET = 40;
    public static final long OFF_REFCOUNT_TABLE_OFFSET = 48;
    public static final long OFF_REFCOUNT_TABLE_CLUSTERS = 56;
    public static final long OFF_NB_SNAPSHOTS = 60;
    public static final long OFF_SNAPSHOTS_OFFSET = 64;
    public static final long OFF_INCOMPATIBLE_FEATURES = 72;
    public static final long OFF_COMPATIBLE_FEATURES = 80;
    public static final long OFF_AUTOCLEAR_FEATURES = 88;
    public static final long OFF_REFCOUNT_ORDER = 96;
    public static final long OFF_HEADER_LENGTH = 100;

    /** Incompatible feature bits (qcow2-format.md §3.1). */
    public static final long INCOMPAT_DIRTY = 1L;
    public static final long INCOMPAT_CORRUPT = 1L << 1;
    public static final long INCOMPAT_COMPRESSION = 1L << 3;
    public static final long INCOMPAT_EXTENDED_L2 = 1L << 4;

    /** Masks of L1/L2/refcount-table entries (qcow2-format.md §5.1, §6.1). */
    public static final long COPIED = 1L << 63;
    public static final long COMPRESSED = 1L << 62;
    public static final long L1_OFFSET_MASK = 0x00fffffffffffe00L;
    public static final long L2_OFFSET_MASK = 0x00fffffffffffe00L;
    public static final long REFTABLE_OFFSET_MASK = 0xfffffffffffffe00L;

    /** Decodes the first 112 bytes of an image (fewer are fine for v2). */
    public static Qcow2HeaderFields decode(ByteBuffer b) {
        int magic = b.getInt(0);
        if (magic != MAGIC) {
            throw new IllegalArgumentException(String.format("magic: 0x%08x (expected: 0x%08x)", magic, MAGIC));
        }
        int version = b.getInt(4);
        boolean v3 = version >= 3;
        return new Qcow2HeaderFields(
                version,
                b.getLong(8),
                b.getInt(16),
                b.getInt(20),
                b.getLong(24),
                b.getInt(32),
                b.getInt(36),
                b.getLong(40),
                b.getLong(48),
                b.getInt(56),
                b.getInt(60),
                b.getLong(64),
                v3 ? b.getLong(72) : 0,
                v3 ? b.getLong(80) : 0,
                v3 ? b.getLong(88) : 0,
                v3 ? b.getInt(96) : 4,
                v3 ? b.getInt(100) : 72);
    }

    public long clusterSize() {
        return 1L << clusterBits;
    }

    public boolean extendedL2() {
        return (incompatibleFeatures & INCOMPAT_EXTENDED_L2) != 0;
    }

    /** Bytes per L2 entry: 16 with extended L2, else 8. */
    public int l2EntryBytes() {
        return extendedL2() ? 16 : 8;
    }

    /** L2 entries per L2 table. */
    public long l2Entries() {
        return clusterSize() / l2EntryBytes();
    }

    public int refcountBits() {
        return 1 << refcountOrder;
    }

    /** Refcount entries per refcount block. */
    public long refcountBlockEntries() {
        return clusterSize() * 8 / refcountBits();
    }
}
