package dev.shear.qcow2;

import java.util.concurrent.ConcurrentHashMap;

/**
 * Refuses data writes that would land on metadata (qcow2-format.md §10 "overlap protection"; QEMU
 * {@code qcow2_check_metadata_overlap} in its default "cached" mode): the header, the active L1 table,
 * active L2 tables, the refcount table and blocks, the snapshot table, snapshot L1 tables and the
 * bitmap directory. A hit means the metadata is inconsistent (a data cluster mapped onto a table):
 * the caller signals corruption ({@link Corruption}) instead of writing.
 *
 * <p>Design: a concurrent map from host cluster index to the kinds of metadata it holds, filled at
 * open from the tables (no L2 or refcount block is read) and kept up to date by the allocator and
 * the metadata writer as tables are created and freed. A check costs one map lookup per cluster and
 * takes no lock, so data writes of different clusters do not serialize on it.
 */
final class OverlapChecker {
    static final int HEADER = 1;
    static final int ACTIVE_L1 = 1 << 1;
    static final int ACTIVE_L2 = 1 << 2;
    static final int REFCOUNT_TABLE = 1 << 3;
    static final int REFCOUNT_BLOCK = 1 << 4;
    static final int SNAPSHOT_TABLE = 1 << 5;
    static final int INACTIVE_L1 = 1 << 6;
    static final int BITMAP_DIRECTORY = 1 << 7;

    private final int clusterBits;
    private final ConcurrentHashMap<Long, Integer> clusters = new ConcurrentHashMap<>();

    OverlapChecker(int clusterBits) {
        this.clusterBits = clusterBits;
    }

    /** Records that [hostOffset, hostOffset + length) holds metadata of {@code kind}. */
    void add(long hostOffset, long length, int kind) {
        if (length <= 0) {
            return;
        }
        long first = hostOffset >>> clusterBits;
        long last = (hostOffset + length - 1) >>> clusterBits;
        for (long c = first; c <= last; c++) {
            clusters.merge(c, kind, (a, b) -> a | b);
        }
    }

    /** Forgets the cluster at {@code hostOffset} (freed). */
    void remove(long hostOffset) {
        clusters.remove(hostOffset >>> clusterBits);
    }

    /**
     * What metadata [hostOffset, hostOffset + length) overlaps, or null when it is free to write
     * (QEMU's message: "Preventing invalid write on metadata (overlaps with ...)").
     */
    String check(long hostOffset, long length) {
        if (length <= 0) {
            return null;
        }
        long first = hostOffset >>> clusterBits;
        long last = (hostOffset + length - 1) >>> clusterBits;
        for (long c = first; c <= last; c++) {
            Integer kinds = clusters.get(c);
            if (kinds != null) {
                return "Preventing invalid write on metadata (overlaps with " + name(kinds) + " at cluster 0x"
                        + Long.toHexString(c << clusterBits) + ")";
            }
        }
        return null;
    }

    private static String name(int kinds) {
        int k = Integer.lowestOneBit(kinds);
        return switch (k) {
            case HEADER -> "qcow2_header";
            case ACTIVE_L1 -> "active L1 table";
            case ACTIVE_L2 -> "active L2 table";
            case REFCOUNT_TABLE -> "refcount table";
            case REFCOUNT_BLOCK -> "refcount block";
            case SNAPSHOT_TABLE -> "snapshot table";
            case INACTIVE_L1 -> "inactive L1 table";
            default -> "bitmap directory";
        };
    }
}
