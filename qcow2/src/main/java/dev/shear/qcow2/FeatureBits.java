package dev.shear.qcow2;

import java.util.List;

/**
 * Feature bits of the version 3 header (qcow2-format.md §3) and the feature name table QEMU 7.2
 * writes (§4.2). Bit numbers count from the least significant bit of the big-endian field.
 */
final class FeatureBits {
    /** Incompatible bit 0: refcounts may be stale (lazy refcounts, unclean close). */
    static final long INCOMPAT_DIRTY = 1L;
    /** Incompatible bit 1: metadata may be corrupt; no writes except repair. */
    static final long INCOMPAT_CORRUPT = 1L << 1;
    /** Incompatible bit 2: guest data lives in an external data file. */
    static final long INCOMPAT_DATA_FILE = 1L << 2;
    /** Incompatible bit 3: compression_type (byte 104) is non-zero. */
    static final long INCOMPAT_COMPRESSION = 1L << 3;
    /** Incompatible bit 4: 128-bit L2 entries with subcluster bitmaps. */
    static final long INCOMPAT_EXTL2 = 1L << 4;
    /** Every incompatible bit QEMU 7.2 knows; any other bit set means refuse to open. */
    static final long INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE
            | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

    /** Compatible bit 0: refcount updates may be postponed (with the dirty bit set). */
    static final long COMPAT_LAZY_REFCOUNTS = 1L;
    /** Every compatible bit we know; unknown compatible bits are ignored. */
    static final long COMPAT_KNOWN = COMPAT_LAZY_REFCOUNTS;

    /** Autoclear bit 0: the bitmaps extension is consistent. */
    static final long AUTOCLEAR_BITMAPS = 1L;
    /** Autoclear bit 1: the external data file is a valid raw image. */
    static final long AUTOCLEAR_DATA_FILE_RAW = 1L << 1;
    /** Every autoclear bit we know; a writer clears the others before its first write. */
    static final long AUTOCLEAR_KNOWN = AUTOCLEAR_BITMAPS | AUTOCLEAR_DATA_FILE_RAW;

    /** The table QEMU 7.2 writes into v3 images, in its order (observed, §4.2). */
    private static final List<FeatureName> QEMU_TABLE = List.of(
            new FeatureName(FeatureName.INCOMPATIBLE, 0, "dirty bit"),
            new FeatureName(FeatureName.INCOMPATIBLE, 1, "corrupt bit"),
            new FeatureName(FeatureName.INCOMPATIBLE, 2, "external data file"),
            new FeatureName(FeatureName.INCOMPATIBLE, 3, "compression type"),
            new FeatureName(FeatureName.INCOMPATIBLE, 4, "extended L2 entries"),
            new FeatureName(FeatureName.COMPATIBLE, 0, "lazy refcounts"),
            new FeatureName(FeatureName.AUTOCLEAR, 0, "bitmaps"),
            new FeatureName(FeatureName.AUTOCLEAR, 1, "raw external data"));

    private FeatureBits() {
    }

    /** QEMU 7.2's feature name table, for writers that want to emit the same header. */
    static List<FeatureName> qemuFeatureTable() {
        return QEMU_TABLE;
    }

    /** Name of a known incompatible bit for messages, or null. */
    static String incompatibleName(int bit) {
        return switch (bit) {
            case 0 -> "dirty bit";
            case 1 -> "corrupt bit";
            case 2 -> "external data file";
            case 3 -> "compression type";
            case 4 -> "extended L2 entries";
            default -> null;
        };
    }

    /**
     * Describes the set bits of {@code mask}, each with its name from {@code table} when the image
     * gives one: {@code bit 5 ("foo"), bit 9}. QEMU's report_unsupported_feature does the same.
     */
    static String describeIncompatible(long mask, List<FeatureName> table) {
        StringBuilder b = new StringBuilder();
        for (long rest = mask; rest != 0; rest &= rest - 1) {
            int bit = Long.numberOfTrailingZeros(rest);
            if (b.length() > 0) {
                b.append(", ");
            }
            b.append("bit ").append(bit);
            String name = null;
            for (FeatureName f : table) {
                if (f.type() == FeatureName.INCOMPATIBLE && f.bit() == bit) {
                    name = f.name();
                    break;
                }
            }
            if (name == null) {
                name = incompatibleName(bit);
            }
            if (name != null) {
                b.append(" (\"").append(name).append("\")");
            }
        }
        return b.toString();
    }
}
