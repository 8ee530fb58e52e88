package dev.shear.qcow2;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Objects;

/**
 * The qcow2 header in cluster 0: fixed fields, extensions and backing file name
 * (qcow2-format.md §2-§4, limits §13, open-time checks §15.16).
 *
 * <p>{@link #decode} performs every check QEMU's qcow2_do_open performs before it trusts a field
 * (see {@link HeaderDecoder} for the list); {@link #encode} lays out cluster 0 as QEMU's
 * qcow2_update_header does. Version 2 headers read as version 3 defaults: no feature bits,
 * refcount_order 4, header_length 72.
 *
 * <p>{@code extensions} holds every extension in file order except the end marker;
 * {@link #backingFormat()}, {@link #featureNameTable()} and {@link #bitmapsExtension()} interpret
 * the known ones. The byte arrays are copied in and out.
 *
 * @param version               2 or 3
 * @param backingFileOffset     offset of the backing file name in cluster 0, 0 if none
 * @param backingFileSize       length of that name as stored (meaningless without a backing file)
 * @param clusterBits           log2 of the cluster size, 9..21
 * @param size                  virtual disk size in bytes
 * @param cryptMethod           0 (anything else is refused at decode)
 * @param l1Size                entries of the active L1 table
 * @param l1TableOffset         cluster-aligned offset of the active L1 table
 * @param refcountTableOffset   cluster-aligned offset of the refcount table
 * @param refcountTableClusters refcount table length in clusters
 * @param nbSnapshots           number of internal snapshots
 * @param snapshotsOffset       cluster-aligned offset of the snapshot table
 * @param incompatibleFeatures  incompatible feature bits ({@link FeatureBits})
 * @param compatibleFeatures    compatible feature bits
 * @param autoclearFeatures     autoclear feature bits
 * @param refcountOrder         refcount width is {@code 1 << refcountOrder} bits, 0..6
 * @param headerLength          72 for v2; 104 or 112 + unknown fields for v3
 * @param compressionType       0 deflate, 1 zstd (0 when header_length is 104)
 * @param unknownHeaderFields   bytes [112, header_length), preserved on rewrite
 * @param extensions            header extensions in file order, end marker excluded
 * @param backingFileName       backing file name, or null
 */
public record Qcow2Header(int version, long backingFileOffset, int backingFileSize, int clusterBits,
        long size, int cryptMethod, int l1Size, long l1TableOffset, long refcountTableOffset,
        int refcountTableClusters, int nbSnapshots, long snapshotsOffset, long incompatibleFeatures,
        long compatibleFeatures, long autoclearFeatures, int refcountOrder, int headerLength,
        int compressionType, byte[] unknownHeaderFields, List<HeaderExtension> extensions,
        String backingFileName) {

    /** "QFI\xfb". */
    public static final int MAGIC = 0x514649fb;

    public Qcow2Header {
        unknownHeaderFields = unknownHeaderFields == null ? new byte[0] : unknownHeaderFields.clone();
        extensions = List.copyOf(Objects.requireNonNull(extensions, "extensions"));
    }

    /**
     * Reads and decodes cluster 0 of {@code file}: first the fixed 112 bytes, so that cluster_bits is
     * bounded before the cluster is allocated, then the whole cluster (bytes past the end of a short
     * file read as zeros, as ImageFile promises).
     */
    public static Qcow2Header read(ImageFile file, String resource) throws IOException {
        long fileSize = file.size();
        ByteBuffer head = ByteBuffer.allocate(Qcow2Limits.V3_HEADER_LENGTH);
        file.read(0, head);
        head.flip();
        int clusterBits = HeaderDecoder.checkPrologue(head, fileSize, resource);
        ByteBuffer cluster0 = ByteBuffer.allocate(1 << clusterBits);
        file.read(0, cluster0);
        cluster0.flip();
        return decode(cluster0, fileSize, resource);
    }

    /**
     * Decodes and validates cluster 0.
     *
     * <p>On entry: {@code cluster0} holds the file from offset 0 between its position and limit;
     * fewer bytes than a cluster are treated as a short file (the rest reads as zeros).
     * {@code fileSize} is the length of the image file. On exit the buffer is unchanged.
     *
     * @throws BlockException INVALID_FORMAT for a malformed field, UNSUPPORTED_FEATURE for a feature
     *                        Shear does not implement; the message names the field, its value, the
     *                        expectation and the field's file offset
     */
    public static Qcow2Header decode(ByteBuffer cluster0, long fileSize, String resource) throws BlockException {
        return HeaderDecoder.decode(cluster0, fileSize, resource);
    }

    /**
     * Encodes cluster 0 in QEMU's order: header, unknown header fields, backing format, external data
     * file name, encryption pointer, feature table, bitmaps, unknown extensions (in this record's
     * order), end marker, backing file name. backing_file_offset and backing_file_size are computed
     * from where the name lands; the record's values for them are ignored.
     *
     * @param clusterSize bytes of the returned buffer, normally {@link #clusterSize()}
     * @throws IllegalArgumentException if the header does not fit or is not encodable
     */
    public ByteBuffer encode(int clusterSize) {
        return HeaderEncoder.encode(this, clusterSize);
    }

    /** Bytes per cluster. */
    public int clusterSize() {
        return 1 << clusterBits;
    }

    /** True when L2 entries are 128 bits with subcluster bitmaps (incompatible bit 4). */
    public boolean hasExtendedL2() {
        return (incompatibleFeatures & FeatureBits.INCOMPAT_EXTL2) != 0;
    }

    /** "zlib" or "zstd", as qemu-img info prints it. */
    public String compressionTypeName() {
        return compressionType == 1 ? "zstd" : "zlib";
    }

    /** Incompatible bit 0: refcounts may be stale. */
    public boolean isDirty() {
        return (incompatibleFeatures & FeatureBits.INCOMPAT_DIRTY) != 0;
    }

    /** Incompatible bit 1: metadata may be corrupt; open read-only only. */
    public boolean isCorrupt() {
        return (incompatibleFeatures & FeatureBits.INCOMPAT_CORRUPT) != 0;
    }

    /** Compatible bit 0. */
    public boolean hasLazyRefcounts() {
        return (compatibleFeatures & FeatureBits.COMPAT_LAZY_REFCOUNTS) != 0;
    }

    /** Width of a refcount entry in bits: 1..64. */
    public int refcountBits() {
        return 1 << refcountOrder;
    }

    /** Bytes per L2 entry: 16 with extended L2, else 8. */
    public int l2EntryBytes() {
        return hasExtendedL2() ? 16 : 8;
    }

    /** log2 of the entries per L2 table. */
    public int l2Bits() {
        return clusterBits - (hasExtendedL2() ? 4 : 3);
    }

    /** The backing format from extension 0xe2792aca, or null. */
    public String backingFormat() {
        HeaderExtension e = extension(HeaderExtension.BACKING_FORMAT);
        return e == null ? null : new String(e.data(), StandardCharsets.UTF_8);
    }

    /**
     * The bitmaps extension, or null when absent. Its fields were validated at decode only when
     * autoclear bit 0 is set; without it QEMU ignores the extension, and so must callers: check
     * {@link #bitmapsConsistent()} first.
     */
    public BitmapsExtension bitmapsExtension() {
        HeaderExtension e = extension(HeaderExtension.BITMAPS);
        if (e == null || e.length() != BitmapsExtension.LENGTH) {
            return null; // decode refuses other lengths; only a hand-built record gets here
        }
        ByteBuffer b = ByteBuffer.wrap(e.data());
        return new BitmapsExtension(b.getInt(0), b.getLong(8), b.getLong(16));
    }

    /** True when the bitmaps extension is present and autoclear bit 0 says it is consistent. */
    public boolean bitmapsConsistent() {
        return extension(HeaderExtension.BITMAPS) != null
                && (autoclearFeatures & FeatureBits.AUTOCLEAR_BITMAPS) != 0;
    }

    /** The feature name table (empty if absent); a trailing partial entry is ignored, as QEMU does. */
    public List<FeatureName> featureNameTable() {
        HeaderExtension e = extension(HeaderExtension.FEATURE_TABLE);
        return e == null ? List.of() : HeaderDecoder.parseFeatureTable(e.data());
    }

    /** Extensions this package does not interpret, in file order. */
    public List<HeaderExtension> unknownExtensions() {
        List<HeaderExtension> out = new ArrayList<>();
        for (HeaderExtension e : extensions) {
            if (!e.isKnown()) {
                out.add(e);
            }
        }
        return List.copyOf(out);
    }

    /** The first extension of {@code type}, or null. */
    public HeaderExtension extension(int type) {
        for (HeaderExtension e : extensions) {
            if (e.type() == type) {
                return e;
            }
        }
        return null;
    }

    /** A copy of the unknown header fields. */
    @Override
    public byte[] unknownHeaderFields() {
        return unknownHeaderFields.clone();
    }

    /** This header with other incompatible feature bits (e.g. to set or clear dirty/corrupt). */
    public Qcow2Header withIncompatibleFeatures(long bits) {
        return new Qcow2Header(version, backingFileOffset, backingFileSize, clusterBits, size, cryptMethod,
                l1Size, l1TableOffset, refcountTableOffset, refcountTableClusters, nbSnapshots,
                snapshotsOffset, bits, compatibleFeatures, autoclearFeatures, refcountOrder, headerLength,
                compressionType, unknownHeaderFields, extensions, backingFileName);
    }

    /** This header with other autoclear feature bits. */
    public Qcow2Header withAutoclearFeatures(long bits) {
        return new Qcow2Header(version, backingFileOffset, backingFileSize, clusterBits, size, cryptMethod,
                l1Size, l1TableOffset, refcountTableOffset, refcountTableClusters, nbSnapshots,
                snapshotsOffset, incompatibleFeatures, compatibleFeatures, bits, refcountOrder, headerLength,
                compressionType, unknownHeaderFields, extensions, backingFileName);
    }

    /** This header with another extension list (file order). */
    public Qcow2Header withExtensions(List<HeaderExtension> list) {
        return new Qcow2Header(version, backingFileOffset, backingFileSize, clusterBits, size, cryptMethod,
                l1Size, l1TableOffset, refcountTableOffset, refcountTableClusters, nbSnapshots,
                snapshotsOffset, incompatibleFeatures, compatibleFeatures, autoclearFeatures, refcountOrder,
                headerLength, compressionType, unknownHeaderFields, list, backingFileName);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Qcow2Header h
                && version == h.version && backingFileOffset == h.backingFileOffset
                && backingFileSize == h.backingFileSize && clusterBits == h.clusterBits && size == h.size
                && cryptMethod == h.cryptMethod && l1Size == h.l1Size && l1TableOffset == h.l1TableOffset
                && refcountTableOffset == h.refcountTableOffset
                && refcountTableClusters == h.refcountTableClusters && nbSnapshots == h.nbSnapshots
                && snapshotsOffset == h.snapshotsOffset && incompatibleFeatures == h.incompatibleFeatures
                && compatibleFeatures == h.compatibleFeatures && autoclearFeatures == h.autoclearFeatures
                && refcountOrder == h.refcountOrder && headerLength == h.headerLength
                && compressionType == h.compressionType
                && Arrays.equals(unknownHeaderFields, h.unknownHeaderFields)
                && extensions.equals(h.extensions) && Objects.equals(backingFileName, h.backingFileName);
    }

    @Override
    public int hashCode() {
        int h = Objects.hash(version, backingFileOffset, backingFileSize, clusterBits, size, cryptMethod, l1Size,
                l1TableOffset, refcountTableOffset, refcountTableClusters, nbSnapshots, snapshotsOffset,
                incompatibleFeatures, compatibleFeatures, autoclearFeatures, refcountOrder, headerLength,
                compressionType, extensions, backingFileName);
        return 31 * h + Arrays.hashCode(unknownHeaderFields);
    }

    @Override
    public String toString() {
        return "Qcow2Header[version=" + version + ", clusterBits=" + clusterBits + ", size=" + size
                + ", l1Size=" + l1Size + ", l1TableOffset=0x" + Long.toHexString(l1TableOffset)
                + ", refcountTableOffset=0x" + Long.toHexString(refcountTableOffset)
                + ", refcountTableClusters=" + refcountTableClusters + ", nbSnapshots=" + nbSnapshots
                + ", snapshotsOffset=0x" + Long.toHexString(snapshotsOffset)
                + ", incompatible=0x" + Long.toHexString(incompatibleFeatures)
                + ", compatible=0x" + Long.toHexString(compatibleFeatures)
                + ", autoclear=0x" + Long.toHexString(autoclearFeatures) + ", refcountOrder=" + refcountOrder
                + ", headerLength=" + headerLength + ", compressionType=" + compressionType
                + ", unknownHeaderFields=" + HexFormat.of().formatHex(unknownHeaderFields)
                + ", extensions=" + extensions + ", backingFileOffset=" + backingFileOffset
                + ", backingFileSize=" + backingFileSize + ", backingFileName=" + backingFileName + "]";
    }
}
