package dev.shear.qcow2;

import dev.shear.block.BlockException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Decodes and validates cluster 0 into a {@link Qcow2Header} (qcow2-format.md §2-§4, §13, §15.16).
 *
 * <p>Checks, in QEMU's qcow2_do_open order, each naming the field, value, expectation and offset:
 * <ol>
 *   <li>file size >= 72, magic, version 2 or 3 (else UNSUPPORTED_FEATURE), cluster_bits 9..21;</li>
 *   <li>v3 header_length >= 104, a multiple of 8, <= cluster size; the file holds the header;</li>
 *   <li>backing_file_offset <= cluster size;</li>
 *   <li>compression_type 0 or 1 (else UNSUPPORTED_FEATURE) and consistent with incompatible bit 3;</li>
 *   <li>unknown incompatible bits (UNSUPPORTED_FEATURE, named from the image's feature table),
 *       external data file (UNSUPPORTED_FEATURE), raw-external-data autoclear bit without it;</li>
 *   <li>extended L2 needs cluster_bits >= 14; refcount_order <= 6; crypt_method 0
 *       (else UNSUPPORTED_FEATURE);</li>
 *   <li>refcount table: >= 1 cluster, <= 8 MiB, offset aligned, end within 2^63 - 1;</li>
 *   <li>snapshot table: nb_snapshots <= 65536, offset aligned (always, as QEMU), end in range;</li>
 *   <li>L1: l1_size <= 4 Mi entries, offset aligned, end in range; size needs an L1 index that fits
 *       an int; l1_size covers size;</li>
 *   <li>extensions: framing inside the area (ending at backing_file_offset, else at the end of
 *       cluster 0), known types at most once, backing format < 16 bytes, bitmaps exactly 24 bytes
 *       and, while autoclear bit 0 is set, reserved 0, 1..65535 bitmaps, directory aligned and
 *       <= 1024 * 65535 bytes; no encryption pointer without encryption;</li>
 *   <li>backing file name: size <= min(1023, cluster size - offset), UTF-8.</li>
 * </ol>
 * Not refused, as QEMU does not refuse them: autoclear bit 0 without a bitmaps extension, a
 * feature table whose length is not a multiple of 48, an end marker missing at the area's end.
 */
final class HeaderDecoder {
    // Field offsets in cluster 0 (qcow2-format.md §2.1-§2.3).
    static final int MAGIC = 0;
    static final int VERSION = 4;
    static final int BACKING_FILE_OFFSET = 8;
    static final int BACKING_FILE_SIZE = 16;
    static final int CLUSTER_BITS = 20;
    static final int SIZE = 24;
    static final int CRYPT_METHOD = 32;
    static final int L1_SIZE = 36;
    static final int L1_TABLE_OFFSET = 40;
    static final int REFCOUNT_TABLE_OFFSET = 48;
    static final int REFCOUNT_TABLE_CLUSTERS = 56;
    static final int NB_SNAPSHOTS = 60;
    static final int SNAPSHOTS_OFFSET = 64;
    static final int INCOMPATIBLE_FEATURES = 72;
    static final int COMPATIBLE_FEATURES = 80;
    static final int AUTOCLEAR_FEATURES = 88;
    static final int REFCOUNT_ORDER = 96;
    static final int HEADER_LENGTH = 100;
    static final int COMPRESSION_TYPE = 104;

    /** Bytes per feature name table entry: type, bit, 46-byte name. */
    static final int FEATURE_ENTRY_BYTES = 48;
    static final int FEATURE_NAME_BYTES = 46;

    private HeaderDecoder() {
    }

    /**
     * Checks what must hold before cluster 0 can be sized: file size, magic, version, cluster_bits.
     * On entry {@code head} holds at least the first 24 bytes from its position. Returns cluster_bits.
     */
    static int checkPrologue(ByteBuffer head, long fileSize, String resource) throws BlockException {
        if (fileSize < Qcow2Limits.V2_HEADER_LENGTH) {
            throw BlockException.format(resource, 0, "file size: %d (expected: >= %d, a qcow2 header)",
                    fileSize, Qcow2Limits.V2_HEADER_LENGTH);
        }
        int p = head.position();
        int magic = head.getInt(p + MAGIC);
        if (magic != Qcow2Header.MAGIC) {
            throw BlockException.format(resource, MAGIC, "magic: 0x%08x (expected: 0x%08x)", magic,
                    Qcow2Header.MAGIC);
        }
        long version = Integer.toUnsignedLong(head.getInt(p + VERSION));
        if (version != 2 && version != 3) {
            throw BlockException.unsupported(resource, VERSION, "version: %d (expected: 2 or 3)", version);
        }
        long clusterBits = Integer.toUnsignedLong(head.getInt(p + CLUSTER_BITS));
        if (clusterBits < Qcow2Limits.MIN_CLUSTER_BITS || clusterBits > Qcow2Limits.MAX_CLUSTER_BITS) {
            throw BlockException.format(resource, CLUSTER_BITS, "cluster_bits: %d (expected: %d..%d)",
                    clusterBits, Qcow2Limits.MIN_CLUSTER_BITS, Qcow2Limits.MAX_CLUSTER_BITS);
        }
        return (int) clusterBits;
    }

    static Qcow2Header decode(ByteBuffer cluster0, long fileSize, String resource) throws BlockException {
        // Index 0 of b is file offset 0; a short buffer is a short file: the rest reads as zeros.
        ByteBuffer b = padded(cluster0, Qcow2Limits.V3_HEADER_LENGTH);
        int clusterBits = checkPrologue(b, fileSize, resource);
        int clusterSize = 1 << clusterBits;
        b = padded(b, clusterSize);
        int version = b.getInt(VERSION);

        // Version 2 has no fields past 72: QEMU reads it as a v3 header with these defaults, and so do
        // we, so that every later check and accessor has one code path.
        long incompatible = 0;
        long compatible = 0;
        long autoclear = 0;
        long refcountOrder = 4;
        long headerLength = Qcow2Limits.V2_HEADER_LENGTH;
        if (version == 3) {
            incompatible = b.getLong(INCOMPATIBLE_FEATURES);
            compatible = b.getLong(COMPATIBLE_FEATURES);
            autoclear = b.getLong(AUTOCLEAR_FEATURES);
            refcountOrder = Integer.toUnsignedLong(b.getInt(REFCOUNT_ORDER));
            headerLength = Integer.toUnsignedLong(b.getInt(HEADER_LENGTH));
            if (headerLength < Qcow2Limits.V3_MIN_HEADER_LENGTH) {
                throw BlockException.format(resource, HEADER_LENGTH,
                        "header_length: %d (expected: >= %d for version 3)", headerLength,
                        Qcow2Limits.V3_MIN_HEADER_LENGTH);
            }
            if (headerLength % 8 != 0) {
                throw BlockException.format(resource, HEADER_LENGTH,
                        "header_length: %d (expected: a multiple of 8)", headerLength);
            }
        }
        if (headerLength > clusterSize) {
            throw BlockException.format(resource, HEADER_LENGTH,
                    "header_length: %d (expected: <= cluster size %d)", headerLength, clusterSize);
        }
        if (fileSize < headerLength) {
            throw BlockException.format(resource, 0, "file size: %d (expected: >= header_length %d)",
                    fileSize, headerLength);
        }
        // The backing name must sit in cluster 0, since it also bounds the extension area below.
        long backingFileOffset = b.getLong(BACKING_FILE_OFFSET);
        if (Long.compareUnsigned(backingFileOffset, clusterSize) > 0) {
            throw BlockException.format(resource, BACKING_FILE_OFFSET,
                    "backing_file_offset: %s (expected: <= cluster size %d)",
                    Long.toUnsignedString(backingFileOffset), clusterSize);
        }
        // compression_type is "absent" (zlib) when header_length stops before it (104-byte headers).
        int compressionType = headerLength > COMPRESSION_TYPE ? Byte.toUnsignedInt(b.get(COMPRESSION_TYPE)) : 0;
        checkCompression(compressionType, incompatible, resource);
        checkFeatures(b, clusterSize, headerLength, backingFileOffset, incompatible, autoclear, resource);
        if ((incompatible & FeatureBits.INCOMPAT_EXTL2) != 0 && clusterBits < Qcow2Limits.MIN_EXTL2_CLUSTER_BITS) {
            throw BlockException.format(resource, CLUSTER_BITS,
                    "cluster_bits: %d (expected: >= %d with extended L2 entries)", clusterBits,
                    Qcow2Limits.MIN_EXTL2_CLUSTER_BITS);
        }
        if (refcountOrder > Qcow2Limits.MAX_REFCOUNT_ORDER) {
            throw BlockException.format(resource, REFCOUNT_ORDER, "refcount_order: %d (expected: 0..%d)",
                    refcountOrder, Qcow2Limits.MAX_REFCOUNT_ORDER);
        }
        // Encryption changes how every data cluster is read; refusing is the only safe answer we have.
        int cryptMethod = b.getInt(CRYPT_METHOD);
        if (cryptMethod != 0) {
            String name = cryptMethod == 1 ? " (AES)" : cryptMethod == 2 ? " (LUKS)" : "";
            throw BlockException.unsupported(resource, CRYPT_METHOD,
                    "crypt_method: %d%s (expected: 0; encrypted images are not supported)",
                    Integer.toUnsignedLong(cryptMethod), name);
        }
        Tables t = checkTables(b, clusterBits, incompatible, resource);

        // Extensions end where the backing name starts; without a name, at the end of cluster 0.

        List<HeaderExtension> extensions = readExtensions(b, (int) headerLength,
                backingFileOffset != 0 ? backingFileOffset : clusterSize, autoclear, true, resource);

        long backingFileSize = Integer.toUnsignedLong(b.getInt(BACKING_FILE_SIZE));
        String backingFileName = null;
        if (backingFileOffset != 0) {
            long max = Math.min(Qcow2Limits.MAX_BACKING_NAME, clusterSize - backingFileOffset);
            if (backingFileSize > max) {
                throw BlockException.format(resource, BACKING_FILE_SIZE,
                        "backing_file_size: %d (expected: <= %d, inside cluster 0 and at most %d bytes)",
                        backingFileSize, max, Qcow2Limits.MAX_BACKING_NAME);
            }
            if (backingFileSize > 0) {
                backingFileName = utf8(b, (int) backingFileOffset, (int) backingFileSize, backingFileOffset,
                        resource, "backing file name");
            }
        }
        // Fields past the 112 bytes we know belong to a newer writer: keep them for the rewrite.
        byte[] unknownFields = new byte[0];
        if (headerLength > Qcow2Limits.V3_HEADER_LENGTH) {
            unknownFields = new byte[(int) headerLength - Qcow2Limits.V3_HEADER_LENGTH];
            b.get(Qcow2Limits.V3_HEADER_LENGTH, unknownFields);
        }
        return new Qcow2Header(version, backingFileOffset, (int) backingFileSize, clusterBits, t.size,
                cryptMethod, t.l1Size, t.l1TableOffset, t.refcountTableOffset, t.refcountTableClusters,
                t.nbSnapshots, t.snapshotsOffset, incompatible, compatible, autoclear, (int) refcountOrder,
                (int) headerLength, compressionType, unknownFields, extensions, backingFileName);
    }

    /** The validated table fields. */
    private record Tables(long size, int l1Size, long l1TableOffset, long refcountTableOffset,
            int refcountTableClusters, int nbSnapshots, long snapshotsOffset) {
    }

    private static void checkCompression(int type, long incompatible, String resource) throws BlockException {
        if (type > 1) {
            throw BlockException.unsupported(resource, COMPRESSION_TYPE,
                    "compression_type: %d (expected: 0 (zlib) or 1 (zstd))", type);
        }
        boolean bit = (incompatible & FeatureBits.INCOMPAT_COMPRESSION) != 0;
        if (type == 0 && bit) {
            throw BlockException.format(resource, INCOMPATIBLE_FEATURES,
                    "incompatible_features: bit 3 (compression type) set with compression_type 0 "
                            + "(expected: clear for zlib)");
        }
        if (type != 0 && !bit) {
            throw BlockException.format(resource, COMPRESSION_TYPE,
                    "compression_type: %d (expected: 0 unless incompatible bit 3 is set)", type);
        }
    }

    private static void checkFeatures(ByteBuffer b, int clusterSize, long headerLength, long backingFileOffset,
            long incompatible, long autoclear, String resource) throws BlockException {
        long unknown = incompatible & ~FeatureBits.INCOMPAT_KNOWN;
        if (unknown != 0) {
            // Like QEMU, read the extensions only for the names, ignoring any framing error.
            List<HeaderExtension> found = readExtensions(b, (int) headerLength,
                    backingFileOffset != 0 ? backingFileOffset : clusterSize, autoclear, false, resource);
            List<FeatureName> table = List.of();
            for (HeaderExtension e : found) {
                if (e.type() == HeaderExtension.FEATURE_TABLE) {
                    table = parseFeatureTable(e.data());
                }
            }
            throw BlockException.unsupported(resource, INCOMPATIBLE_FEATURES,
                    "incompatible_features: 0x%x has unknown %s (expected: only bits of 0x%x)", incompatible,
                    FeatureBits.describeIncompatible(unknown, table), FeatureBits.INCOMPAT_KNOWN);
        }
        if ((incompatible & FeatureBits.INCOMPAT_DATA_FILE) != 0) {
            throw BlockException.unsupported(resource, INCOMPATIBLE_FEATURES,
                    "incompatible_features: bit 2 (external data file) set "
                            + "(expected: clear; external data files are not supported)");
        }
        if ((autoclear & FeatureBits.AUTOCLEAR_DATA_FILE_RAW) != 0) {
            throw BlockException.format(resource, AUTOCLEAR_FEATURES,
                    "autoclear_features: bit 1 (raw external data) set "
                            + "(expected: only with incompatible bit 2, external data file)");
        }
    }

    private static Tables checkTables(ByteBuffer b, int clusterBits, long incompatible, String resource)
            throws BlockException {
        int clusterSize = 1 << clusterBits;
        // Unsigned 32-bit fields go through toUnsignedLong so that 0xffffffff is a large count, not -1.
        long reftableClusters = Integer.toUnsignedLong(b.getInt(REFCOUNT_TABLE_CLUSTERS));
        if (reftableClusters == 0) {
            throw BlockException.format(resource, REFCOUNT_TABLE_CLUSTERS,
                    "refcount_table_clusters: 0 (expected: >= 1)");
        }
        long maxReftableClusters = Qcow2Limits.MAX_REFTABLE_BYTES >> clusterBits;
        if (reftableClusters > maxReftableClusters) {
            throw BlockException.format(resource, REFCOUNT_TABLE_CLUSTERS,
                    "refcount_table_clusters: %d (expected: <= %d, an 8 MiB refcount table)",
                    reftableClusters, maxReftableClusters);
        }
        long reftableOffset = b.getLong(REFCOUNT_TABLE_OFFSET);
        checkTable(reftableOffset, reftableClusters << clusterBits, clusterSize, REFCOUNT_TABLE_OFFSET,
                "refcount_table_offset", resource);

        long nbSnapshots = Integer.toUnsignedLong(b.getInt(NB_SNAPSHOTS));
        if (nbSnapshots > Qcow2Limits.MAX_SNAPSHOTS) {
            throw BlockException.format(resource, NB_SNAPSHOTS, "nb_snapshots: %d (expected: <= %d)",
                    nbSnapshots, Qcow2Limits.MAX_SNAPSHOTS);
        }
        // QEMU checks the snapshot table offset even with no snapshots; so do we, to refuse what it refuses.
        long snapshotsOffset = b.getLong(SNAPSHOTS_OFFSET);
        checkTable(snapshotsOffset, nbSnapshots * Qcow2Limits.SNAPSHOT_HEADER_BYTES, clusterSize,
                SNAPSHOTS_OFFSET, "snapshots_offset", resource);

        long l1Size = Integer.toUnsignedLong(b.getInt(L1_SIZE));
        if (l1Size > Qcow2Limits.MAX_L1_ENTRIES) {
            throw BlockException.format(resource, L1_SIZE, "l1_size: %d (expected: <= %d, a 32 MiB L1 table)",
                    l1Size, Qcow2Limits.MAX_L1_ENTRIES);
        }
        long l1Offset = b.getLong(L1_TABLE_OFFSET);
        checkTable(l1Offset, l1Size * 8, clusterSize, L1_TABLE_OFFSET, "l1_table_offset", resource);

        // The L1 table must map the whole virtual disk, or reads near the end would index past it.
        long size = b.getLong(SIZE);
        if (size < 0) {
            throw BlockException.format(resource, SIZE, "size: %s (expected: <= %d)",
                    Long.toUnsignedString(size), Long.MAX_VALUE);
        }
        int l2Bits = clusterBits - ((incompatible & FeatureBits.INCOMPAT_EXTL2) != 0 ? 4 : 3);
        int shift = clusterBits + l2Bits;
        // size + 2^shift - 1 may pass 2^63 but not 2^64: the unsigned shift gives the exact ceiling.
        long l1Needed = (size + (1L << shift) - 1) >>> shift;
        if (l1Needed > Qcow2Limits.MAX_L1_INDEX) {
            throw BlockException.format(resource, SIZE,
                    "size: %d (expected: an L1 index <= %d; the image is too big for cluster_bits %d)",
                    size, Qcow2Limits.MAX_L1_INDEX, clusterBits);
        }
        if (l1Size < l1Needed) {
            throw BlockException.format(resource, L1_SIZE, "l1_size: %d (expected: >= %d for size %d)",
                    l1Size, l1Needed, size);
        }
        return new Tables(size, (int) l1Size, l1Offset, reftableOffset, (int) reftableClusters,
                (int) nbSnapshots, snapshotsOffset);
    }

    /**
     * QEMU's qcow2_validate_table: the offset is cluster-aligned and the table ends at or below
     * 2^63 - 1 (checked with addExact, so a huge offset cannot wrap).
     */
    static void checkTable(long offset, long bytes, int clusterSize, long fieldOffset, String field,
            String resource) throws BlockException {
        if ((offset & (clusterSize - 1)) != 0) {
            throw BlockException.format(resource, fieldOffset, "%s: 0x%x (expected: aligned to cluster size %d)",
                    field, offset, clusterSize);
        }
        try {
            if (offset < 0) {
                throw new ArithmeticException();
            }
            Math.addExact(offset, bytes);
        } catch (ArithmeticException e) {
            throw BlockException.format(resource, fieldOffset,
                    "%s: 0x%x (expected: offset + %d bytes <= 0x7fffffffffffffff)", field, offset, bytes);
        }
    }

    /**
     * Walks the extension area [start, end). In strict mode every framing or content problem is an
     * error; otherwise the walk stops quietly at the first one (used only to find feature names).
     */
    private static List<HeaderExtension> readExtensions(ByteBuffer b, int start, long end, long autoclear,
            boolean strict, String resource) throws BlockException {
        List<HeaderExtension> out = new ArrayList<>();
        Set<Integer> seen = new HashSet<>();
        long offset = start;
        while (offset < end) {
            if (offset + 8 > end) {
                if (!strict) {
                    break;
                }
                throw BlockException.format(resource, offset,
                        "header extension at 0x%x: 8 bytes of framing (expected: inside the extension area "
                                + "ending at 0x%x)", offset, end);
            }
            int type = b.getInt((int) offset);
            long length = Integer.toUnsignedLong(b.getInt((int) offset + 4));
            long data = offset + 8;
            if (length > end - data) {
                if (!strict) {
                    break;
                }
                throw BlockException.format(resource, offset + 4,
                        "header extension 0x%08x length: %d (expected: <= %d, inside the extension area "
                                + "ending at 0x%x)", type, length, end - data, end);
            }
            if (type == HeaderExtension.END) {
                break; // a missing end marker is not an error: QEMU stops at the area's end too
            }
            byte[] payload = new byte[(int) length];
            b.get((int) data, payload);
            if (strict) {
                checkExtension(type, payload, offset, autoclear, b.getInt(CLUSTER_BITS), resource);
                if (HeaderExtension.isKnownType(type) && !seen.add(type)) {
                    throw BlockException.format(resource, offset,
                            "header extension 0x%08x (%s): repeated (expected: at most once)", type,
                            HeaderExtension.typeName(type));
                }
            }
            out.add(new HeaderExtension(type, payload));
            // Padding may step past the area's end; the loop condition then ends the walk, as in QEMU.
            offset = data + ((length + 7) & ~7L);
        }
        return out;
    }

    // Bitmaps extension payload (§4.3):
    //   0  u32 nb_bitmaps | 4 u32 reserved | 8 u64 bitmap_directory_size | 16 u64 bitmap_directory_offset
    private static void checkExtension(int type, byte[] payload, long offset, long autoclear, int clusterBits,
            String resource) throws BlockException {
        switch (type) {
            case HeaderExtension.BACKING_FORMAT -> {
                if (payload.length > Qcow2Limits.MAX_BACKING_FORMAT) {
                    throw BlockException.format(resource, offset + 4,
                            "backing format extension length: %d (expected: <= %d)", payload.length,
                            Qcow2Limits.MAX_BACKING_FORMAT);
                }
            }
            case HeaderExtension.CRYPTO_HEADER -> throw BlockException.format(resource, offset,
                    "full disk encryption header pointer extension: present (expected: only with crypt_method 2)");
            case HeaderExtension.BITMAPS -> checkBitmaps(payload, offset, autoclear, clusterBits, resource);
            default -> {
                // Feature table and data file name carry nothing to bound; unknown types are opaque.
            }
        }
    }

    private static void checkBitmaps(byte[] payload, long offset, long autoclear, int clusterBits,
            String resource) throws BlockException {
        if (payload.length != BitmapsExtension.LENGTH) {
            throw BlockException.format(resource, offset + 4, "bitmaps extension length: %d (expected: %d)",
                    payload.length, BitmapsExtension.LENGTH);
        }
        if ((autoclear & FeatureBits.AUTOCLEAR_BITMAPS) == 0) {
            return; // QEMU ignores the content: the bitmaps are inconsistent and will be dropped.
        }
        ByteBuffer p = ByteBuffer.wrap(payload);
        long data = offset + 8;
        long nb = Integer.toUnsignedLong(p.getInt(0));
        int reserved = p.getInt(4);
        long dirSize = p.getLong(8);
        long dirOffset = p.getLong(16);
        if (reserved != 0) {
            throw BlockException.format(resource, data + 4, "bitmaps extension reserved: 0x%x (expected: 0)",
                    reserved);
        }
        if (nb == 0 || nb > Qcow2Limits.MAX_BITMAPS) {
            throw BlockException.format(resource, data, "nb_bitmaps: %d (expected: 1..%d)", nb,
                    Qcow2Limits.MAX_BITMAPS);
        }
        if (Long.compareUnsigned(dirSize, Qcow2Limits.MAX_BITMAP_DIRECTORY_BYTES) > 0) {
            throw BlockException.format(resource, data + 8, "bitmap_directory_size: %s (expected: <= %d)",
                    Long.toUnsignedString(dirSize), Qcow2Limits.MAX_BITMAP_DIRECTORY_BYTES);
        }
        checkTable(dirOffset, dirSize, 1 << clusterBits, data + 16, "bitmap_directory_offset", resource);
    }

    /** Feature name table entries (§4.2); a trailing partial entry is ignored, as QEMU does. */
    static List<FeatureName> parseFeatureTable(byte[] data) {
        List<FeatureName> out = new ArrayList<>();
        for (int i = 0; i + FEATURE_ENTRY_BYTES <= data.length; i += FEATURE_ENTRY_BYTES) {
            int n = 0;
            while (n < FEATURE_NAME_BYTES && data[i + 2 + n] != 0) {
                n++;
            }
            out.add(new FeatureName(Byte.toUnsignedInt(data[i]), Byte.toUnsignedInt(data[i + 1]),
                    new String(data, i + 2, n, StandardCharsets.UTF_8)));
        }
        return List.copyOf(out);
    }

    /** Decodes UTF-8 strictly: a name that does not round-trip would be rewritten differently. */
    static String utf8(ByteBuffer b, int index, int length, long fileOffset, String resource, String what)
            throws BlockException {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(b.slice(index, length)).toString();
        } catch (CharacterCodingException e) {
            throw BlockException.format(resource, fileOffset, "%s: %d bytes of invalid UTF-8 (expected: UTF-8)",
                    what, length);
        }
    }

    /** The bytes from index 0 of {@code src} (its position), zero-padded to at least {@code min}. */
    private static ByteBuffer padded(ByteBuffer src, int min) {
        ByteBuffer s = src.slice();
        if (s.remaining() >= min) {
            return s;
        }
        ByteBuffer out = ByteBuffer.allocate(min);
        out.put(s).clear();
        return out;
    }
}
