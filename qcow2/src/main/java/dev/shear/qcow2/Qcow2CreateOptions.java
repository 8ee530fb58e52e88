package dev.shear.qcow2;

import java.util.Locale;
import java.util.Map;

/**
 * What {@link Qcow2Creator} makes, with {@code qemu-img create -f qcow2 -o} option names and defaults
 * (QEMU 7.2 block/qcow2.c {@code qcow2_create_opts}).
 *
 * @param sizeBytes       virtual size; a multiple of 512 (QEMU: "Image size must be a multiple of 512")
 * @param clusterSize     {@code cluster_size}: 512 .. 2 MiB, a power of two; default 65536
 * @param version         {@code compat}: 3 for "1.1" (default), 2 for "0.10"
 * @param compressionType {@code compression_type}: 0 zlib/deflate (default), 1 zstd (v3 only)
 * @param extendedL2      {@code extended_l2}: subclusters; v3 and cluster_size >= 16 KiB
 * @param lazyRefcounts   {@code lazy_refcounts}: compatible bit 0 (v3 only)
 * @param refcountBits    {@code refcount_bits}: 1, 2, 4, 8, 16 (default), 32, 64; v2 only 16
 * @param preallocation   {@code preallocation}: off, metadata, full (falloc is treated as full)
 * @param backingFile     {@code backing_file} / {@code -b}: stored as given, or null
 * @param backingFormat   {@code backing_fmt} / {@code -F}: required with a backing file (QEMU 7.2 refuses
 *                        to create an overlay without it)
 */
public record Qcow2CreateOptions(long sizeBytes, int clusterSize, int version, int compressionType,
        boolean extendedL2, boolean lazyRefcounts, int refcountBits, Preallocation preallocation,
        String backingFile, String backingFormat) {

    /** {@code preallocation=}. */
    public enum Preallocation {
        /** Only the header, refcount structures and L1 table. */
        OFF,
        /** Also every L2 table and a host cluster for every guest cluster (not written). */
        METADATA,
        /** As METADATA, and the data clusters written with zeros. */
        FULL
    }

    public Qcow2CreateOptions {
        if (sizeBytes < 0 || sizeBytes % 512 != 0) {
            throw new IllegalArgumentException("size: " + sizeBytes + " (expected: a multiple of 512)");
        }
        if (Integer.bitCount(clusterSize) != 1 || clusterSize < 512 || clusterSize > (2 << 20)) {
            throw new IllegalArgumentException("cluster_size: " + clusterSize
                    + " (expected: a power of two from 512 to 2097152)");
        }
        if (version != 2 && version != 3) {
            throw new IllegalArgumentException("compat: version " + version + " (expected: 0.10 or 1.1)");
        }
        if (Integer.bitCount(refcountBits) != 1 || refcountBits > 64) {
            throw new IllegalArgumentException("refcount_bits: " + refcountBits
                    + " (expected: a power of two from 1 to 64)");
        }
        if (compressionType != 0 && compressionType != 1) {
            throw new IllegalArgumentException("compression_type: " + compressionType + " (expected: zlib or zstd)");
        }
        if (version == 2 && (refcountBits != 16 || lazyRefcounts || extendedL2 || compressionType != 0)) {
            throw new IllegalArgumentException("compat: 0.10 (expected: 1.1 for refcount_bits other than 16, "
                    + "lazy_refcounts, extended_l2 or compression_type=zstd)");
        }
        if (extendedL2 && clusterSize < (16 << 10)) {
            throw new IllegalArgumentException("extended_l2: on with cluster_size " + clusterSize
                    + " (expected: cluster_size >= 16384)");
        }
        if (preallocation == null) {
            preallocation = Preallocation.OFF;
        }
        if (backingFile != null && (backingFormat == null || backingFormat.isEmpty())) {
            throw new IllegalArgumentException("backing_fmt: missing (expected: the backing file's format, -F)");
        }
        if (backingFormat != null && backingFormat.length() > Qcow2Limits.MAX_BACKING_FORMAT) {
            throw new IllegalArgumentException("backing_fmt: " + backingFormat + " (expected: < 16 bytes)");
        }
        if (backingFile != null && preallocation != Preallocation.OFF) {
            throw new IllegalArgumentException("preallocation: " + preallocation.name().toLowerCase(Locale.ROOT)
                    + " with a backing file (expected: off)");
        }
    }

    /** QEMU's defaults for a disk of {@code sizeBytes}. */
    public static Qcow2CreateOptions defaults(long sizeBytes) {
        return new Qcow2CreateOptions(sizeBytes, 65536, 3, 0, false, false, 16, Preallocation.OFF, null, null);
    }

    /**
     * Parses {@code qemu-img create -o} options ({@code key=value}); unknown keys and bad values throw
     * IllegalArgumentException naming them. {@code backing_file}/{@code backing_fmt} may come from here
     * or from the arguments (the arguments win when non-null).
     */
    public static Qcow2CreateOptions parse(long sizeBytes, Map<String, String> options, String backingFile,
            String backingFormat) {
        int clusterSize = 65536;
        int version = 3;
        int compression = 0;
        boolean extendedL2 = false;
        boolean lazy = false;
        int refcountBits = 16;
        Preallocation prealloc = Preallocation.OFF;
        String backing = backingFile;
        String backingFmt = backingFormat;
        for (Map.Entry<String, String> e : options.entrySet()) {
            String v = e.getValue();
            switch (e.getKey()) {
                case "cluster_size" -> clusterSize = (int) parseSize(v);
                case "compat" -> version = switch (v) {
                    case "0.10", "v2" -> 2;
                    case "1.1", "v3" -> 3;
                    default -> throw new IllegalArgumentException("compat: " + v + " (expected: 0.10 or 1.1)");
                };
                case "compression_type" -> compression = switch (v) {
                    case "zlib", "deflate" -> 0;
                    case "zstd" -> 1;
                    default -> throw new IllegalArgumentException("compression_type: " + v
                            + " (expected: zlib or zstd)");
                };
                case "extended_l2" -> extendedL2 = parseBool("extended_l2", v);
                case "lazy_refcounts" -> lazy = parseBool("lazy_refcounts", v);
                case "refcount_bits" -> refcountBits = Integer.parseInt(v);
                case "preallocation" -> prealloc = switch (v) {
                    case "off" -> Preallocation.OFF;
                    case "metadata" -> Preallocation.METADATA;
                    case "full", "falloc" -> Preallocation.FULL;
                    default -> throw new IllegalArgumentException("preallocation: " + v
                            + " (expected: off, metadata, falloc or full)");
                };
                case "backing_file" -> backing = backing != null ? backing : v;
                case "backing_fmt" -> backingFmt = backingFmt != null ? backingFmt : v;
                default -> throw new IllegalArgumentException("option: " + e.getKey() + " (expected: one of "
                        + "cluster_size, compat, compression_type, extended_l2, lazy_refcounts, refcount_bits, "
                        + "preallocation, backing_file, backing_fmt)");
            }
        }
        return new Qcow2CreateOptions(sizeBytes, clusterSize, version, compression, extendedL2, lazy, refcountBits,
                prealloc, backing, backingFmt);
    }

    private static boolean parseBool(String key, String v) {
        return switch (v) {
            case "on", "true", "yes" -> true;
            case "off", "false", "no" -> false;
            default -> throw new IllegalArgumentException(key + ": " + v + " (expected: on or off)");
        };
    }

    /**
     * A size as qemu-img reads it: a number with an optional suffix k/K, M, G, T, P, E (powers of 1024)
     * or b/B (bytes).
     */
    public static long parseSize(String text) {
        String t = text.trim();
        if (t.isEmpty()) {
            throw new IllegalArgumentException("size: empty (expected: a number with an optional k, M, G, T suffix)");
        }
        char last = t.charAt(t.length() - 1);
        int shift = switch (last) {
            case 'k', 'K' -> 10;
            case 'M', 'm' -> 20;
            case 'G', 'g' -> 30;
            case 'T', 't' -> 40;
            case 'P', 'p' -> 50;
            case 'E', 'e' -> 60;
            case 'b', 'B' -> 0;
            default -> -1;
        };
        String digits = shift >= 0 ? t.substring(0, t.length() - 1) : t;
        try {
            if (digits.contains(".")) {
                double d = Double.parseDouble(digits) * Math.pow(2, Math.max(shift, 0));
                if (d < 0 || d >= Math.pow(2, 63)) {
                    throw new NumberFormatException();
                }
                return (long) d;
            }
            long n = Long.parseLong(digits);
            if (n < 0 || (shift > 0 && n > (Long.MAX_VALUE >> shift))) {
                throw new NumberFormatException();
            }
            return shift > 0 ? n << shift : n;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("size: " + text + " (expected: a non-negative number with an "
                    + "optional k, M, G, T, P or E suffix)");
        }
    }
}
