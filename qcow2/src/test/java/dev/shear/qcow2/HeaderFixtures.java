package dev.shear.qcow2;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;

/**
 * Annotated cluster-0 fixtures (qcow2-format.md §2-§4, §14). The QEMU ones are the bytes of
 * {@code qemu-img create -f qcow2 [-o compat=0.10] x.qcow2 64M} made with QEMU 7.2 on the build
 * machine, copied here so that no test needs the tool.
 */
final class HeaderFixtures {
    /** Length of the files QEMU created: they end after the 8-byte L1 table in cluster 3 (§14). */
    static final long QEMU_FILE_SIZE = 0x30008;

    /** Cluster 0 of a fresh QEMU 7.2 v3 image, up to the end marker; the rest of the cluster is zero. */
    static final String QEMU_64M_V3 = ""
            + "514649fb" // 0x00 magic "QFI\xfb"
            + "00000003" // 0x04 version 3
            + "0000000000000000" // 0x08 backing_file_offset 0: no backing file
            + "00000000" // 0x10 backing_file_size 0
            + "00000010" // 0x14 cluster_bits 16: 64 KiB clusters
            + "0000000004000000" // 0x18 size 0x4000000: 64 MiB
            + "00000000" // 0x20 crypt_method 0
            + "00000001" // 0x24 l1_size 1
            + "0000000000030000" // 0x28 l1_table_offset 0x30000: cluster 3
            + "0000000000010000" // 0x30 refcount_table_offset 0x10000: cluster 1
            + "00000001" // 0x38 refcount_table_clusters 1
            + "00000000" // 0x3c nb_snapshots 0
            + "0000000000000000" // 0x40 snapshots_offset 0
            + "0000000000000000" // 0x48 incompatible_features 0
            + "0000000000000000" // 0x50 compatible_features 0
            + "0000000000000000" // 0x58 autoclear_features 0
            + "00000004" // 0x60 refcount_order 4: 16-bit refcounts
            + "00000070" // 0x64 header_length 0x70 = 112
            + "00" // 0x68 compression_type 0: zlib
            + "00000000000000" // 0x69 padding
            + "6803f857" // 0x70 extension type: feature name table
            + "00000180" // 0x74 extension length 0x180 = 8 entries of 48 bytes
            + "0000" + "646972747920626974" // 0x78 type 0, bit 0, "dirty bit"
            + "00".repeat(37) // zero padding of the 46-byte name
            + "0001" + "636f727275707420626974" // 0xa8 type 0, bit 1, "corrupt bit"
            + "00".repeat(35)
            + "0002" + "65787465726e616c20646174612066696c65" // 0xd8 type 0, bit 2, "external data file"
            + "00".repeat(28)
            + "0003" + "636f6d7072657373696f6e2074797065" // 0x108 type 0, bit 3, "compression type"
            + "00".repeat(30)
            + "0004" + "657874656e646564204c3220656e7472696573" // 0x138 type 0, bit 4, "extended L2 entries"
            + "00".repeat(27)
            + "0100" + "6c617a7920726566636f756e7473" // 0x168 type 1, bit 0, "lazy refcounts"
            + "00".repeat(32)
            + "0200" + "6269746d617073" // 0x198 type 2, bit 0, "bitmaps"
            + "00".repeat(39)
            + "0201" + "7261772065787465726e616c2064617461" // 0x1c8 type 2, bit 1, "raw external data"
            + "00".repeat(29)
            + "0000000000000000"; // 0x1f8 end of extensions: type 0, length 0

    /** Cluster 0 of a fresh QEMU 7.2 v2 (compat=0.10) image: 72 bytes, then the end marker (zeros). */
    static final String QEMU_64M_V2 = ""
            + "514649fb" // 0x00 magic
            + "00000002" // 0x04 version 2
            + "0000000000000000" // 0x08 backing_file_offset 0
            + "00000000" // 0x10 backing_file_size 0
            + "00000010" // 0x14 cluster_bits 16
            + "0000000004000000" // 0x18 size 64 MiB
            + "00000000" // 0x20 crypt_method 0
            + "00000001" // 0x24 l1_size 1
            + "0000000000030000" // 0x28 l1_table_offset 0x30000
            + "0000000000010000" // 0x30 refcount_table_offset 0x10000
            + "00000001" // 0x38 refcount_table_clusters 1
            + "00000000" // 0x3c nb_snapshots 0
            + "0000000000000000"; // 0x40 snapshots_offset 0; no feature table in v2 images

    /** Offset of the backing file name in {@link #v3WithExtensions()}. */
    static final int EXT_BACKING_NAME_OFFSET = 0xc0;

    private HeaderFixtures() {
    }

    /** A 64 KiB cluster 0 holding {@code hex} at offset 0. */
    static ByteBuffer cluster(String hex) {
        return cluster(hex, 1 << 16);
    }

    static ByteBuffer cluster(String hex, int clusterSize) {
        ByteBuffer b = ByteBuffer.allocate(clusterSize);
        b.put(HexFormat.of().parseHex(hex));
        return b.clear();
    }

    /**
     * A v3 cluster 0 (4 KiB clusters) with every kind of extension Shear keeps, built byte by byte in
     * QEMU's order so that encode(decode(x)) == x: backing format, bitmaps, an unknown extension,
     * 8 bytes of unknown header fields, and a backing file name after the end marker.
     */
    static ByteBuffer v3WithExtensions() {
        ByteBuffer b = ByteBuffer.allocate(4096);
        b.putInt(0x514649fb); // 0x00 magic
        b.putInt(3); // 0x04 version
        b.putLong(EXT_BACKING_NAME_OFFSET); // 0x08 backing_file_offset: right after the end marker
        b.putInt(10); // 0x10 backing_file_size: "base.qcow2"
        b.putInt(12); // 0x14 cluster_bits: 4 KiB
        b.putLong(64L << 20); // 0x18 size: 64 MiB, needs 32 L1 entries (2 MiB per L2 table)
        b.putInt(0); // 0x20 crypt_method
        b.putInt(32); // 0x24 l1_size
        b.putLong(0x3000); // 0x28 l1_table_offset: cluster 3
        b.putLong(0x1000); // 0x30 refcount_table_offset: cluster 1
        b.putInt(1); // 0x38 refcount_table_clusters
        b.putInt(0); // 0x3c nb_snapshots
        b.putLong(0); // 0x40 snapshots_offset
        b.putLong(0); // 0x48 incompatible_features
        b.putLong(1); // 0x50 compatible_features: lazy refcounts
        b.putLong(1); // 0x58 autoclear_features: bitmaps consistent
        b.putInt(4); // 0x60 refcount_order
        b.putInt(120); // 0x64 header_length: 112 + 8 bytes of unknown fields
        b.put((byte) 0); // 0x68 compression_type: zlib
        b.put(new byte[7]); // 0x69 padding
        b.putLong(0xdeadbeef01020304L); // 0x70 unknown header field, preserved
        b.putInt(0xe2792aca); // 0x78 extension: backing format
        b.putInt(5); // 0x7c length 5
        b.put("qcow2".getBytes(StandardCharsets.US_ASCII)).put(new byte[3]); // 0x80 "qcow2" + padding
        b.putInt(0x23852875); // 0x88 extension: bitmaps
        b.putInt(24); // 0x8c length 24
        b.putInt(1); // 0x90 nb_bitmaps
        b.putInt(0); // 0x94 reserved
        b.putLong(32); // 0x98 bitmap_directory_size: one entry with a 2-byte name
        b.putLong(0x5000); // 0xa0 bitmap_directory_offset: cluster 5
        b.putInt(0x12345678); // 0xa8 extension: unknown type, preserved
        b.putInt(5); // 0xac length 5
        b.put(new byte[] {1, 2, 3, 4, 5}).put(new byte[3]); // 0xb0 data + padding
        b.putLong(0); // 0xb8 end of extensions
        b.put("base.qcow2".getBytes(StandardCharsets.US_ASCII)); // 0xc0 backing file name
        return b.clear();
    }

    static void putInt(ByteBuffer b, int offset, int value) {
        b.putInt(offset, value);
    }

    static void putLong(ByteBuffer b, int offset, long value) {
        b.putLong(offset, value);
    }
}
