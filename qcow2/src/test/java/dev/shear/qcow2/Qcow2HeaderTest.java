package dev.shear.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Decoding, validation and encoding of cluster 0 (qcow2-format.md §2-§4, §13, §15.16). */
class Qcow2HeaderTest {
    private static final String IMAGE = "t.qcow2";

    private static Qcow2Header decode(ByteBuffer b) throws BlockException {
        return Qcow2Header.decode(b, HeaderFixtures.QEMU_FILE_SIZE, IMAGE);
    }

    private static Qcow2Header qemuHeader() {
        return new Qcow2Header(3, 0, 0, 16, 64L << 20, 0, 1, 0x30000, 0x10000, 1, 0, 0, 0, 0, 0, 4, 112, 0,
                new byte[0], List.of(HeaderEncoder.featureTable(FeatureBits.qemuFeatureTable())), null);
    }

    @Test
    void qemuV3HeaderShouldDecodeEveryField() throws BlockException {
        Qcow2Header h = decode(HeaderFixtures.cluster(HeaderFixtures.QEMU_64M_V3));
        assertEquals(qemuHeader(), h);
        assertEquals(65536, h.clusterSize());
        assertEquals(16, h.refcountBits());
        assertEquals("zlib", h.compressionTypeName());
        assertFalse(h.isDirty() || h.isCorrupt() || h.hasLazyRefcounts() || h.hasExtendedL2());
        assertEquals(FeatureBits.qemuFeatureTable(), h.featureNameTable());
        assertNull(h.backingFormat());
        assertNull(h.bitmapsExtension());
        assertFalse(h.bitmapsConsistent());
        assertTrue(h.unknownExtensions().isEmpty());
    }

    @Test
    void encodeShouldReproduceQemuHeaderByteForByte() {
        ByteBuffer expected = HeaderFixtures.cluster(HeaderFixtures.QEMU_64M_V3);
        assertEquals(expected, qemuHeader().encode(65536));
    }

    @Test
    void qemuV2HeaderShouldReadAsV3Defaults() throws BlockException {
        Qcow2Header h = decode(HeaderFixtures.cluster(HeaderFixtures.QEMU_64M_V2));
        assertEquals(2, h.version());
        assertEquals(72, h.headerLength());
        assertEquals(4, h.refcountOrder());
        assertEquals(0, h.incompatibleFeatures() | h.compatibleFeatures() | h.autoclearFeatures());
        assertTrue(h.extensions().isEmpty());
        assertEquals(HeaderFixtures.cluster(HeaderFixtures.QEMU_64M_V2), h.encode(65536));
    }

    @Test
    void headerWithEveryExtensionShouldDecodeAndRoundTripByteForByte() throws BlockException {
        ByteBuffer fixture = HeaderFixtures.v3WithExtensions();
        Qcow2Header h = decode(fixture);
        assertEquals("qcow2", h.backingFormat());
        assertEquals("base.qcow2", h.backingFileName());
        assertEquals(HeaderFixtures.EXT_BACKING_NAME_OFFSET, h.backingFileOffset());
        assertEquals(new BitmapsExtension(1, 32, 0x5000), h.bitmapsExtension());
        assertTrue(h.bitmapsConsistent());
        assertTrue(h.hasLazyRefcounts());
        assertArrayEquals(HexFormat.of().parseHex("deadbeef01020304"), h.unknownHeaderFields());
        assertEquals(List.of(new HeaderExtension(0x12345678, new byte[] {1, 2, 3, 4, 5})), h.unknownExtensions());
        assertEquals(fixture, h.encode(4096));
        assertEquals(h, decode(h.encode(4096)));
    }

    @Test
    void encodeShouldPutKnownExtensionsInQemuOrderAndKeepUnknownOrder() throws BlockException {
        HeaderExtension u1 = new HeaderExtension(0x11111111, new byte[] {9});
        HeaderExtension u2 = new HeaderExtension(0x22222222, new byte[12]);
        HeaderExtension format = new HeaderExtension(HeaderExtension.BACKING_FORMAT, "raw".getBytes());
        Qcow2Header h = qemuHeader().withExtensions(List.of(u2, format, u1,
                HeaderEncoder.featureTable(FeatureBits.qemuFeatureTable())));
        Qcow2Header back = decode(h.encode(65536));
        assertEquals(List.of(HeaderExtension.BACKING_FORMAT, HeaderExtension.FEATURE_TABLE, 0x22222222, 0x11111111),
                back.extensions().stream().map(HeaderExtension::type).toList());
    }

    static Stream<Arguments> mutations() {
        BlockErrorKind f = BlockErrorKind.INVALID_FORMAT;
        BlockErrorKind u = BlockErrorKind.UNSUPPORTED_FEATURE;
        return Stream.of(
                Arguments.of(0x00, 4, 0L, f, "magic: 0x00000000"),
                Arguments.of(0x04, 4, 1L, u, "version: 1 (expected: 2 or 3)"),
                Arguments.of(0x04, 4, 4L, u, "version: 4"),
                Arguments.of(0x14, 4, 8L, f, "cluster_bits: 8 (expected: 9..21)"),
                Arguments.of(0x14, 4, 22L, f, "cluster_bits: 22"),
                Arguments.of(0x64, 4, 100L, f, "header_length: 100 (expected: >= 104"),
                Arguments.of(0x64, 4, 108L, f, "header_length: 108 (expected: a multiple of 8)"),
                Arguments.of(0x64, 4, 65544L, f, "header_length: 65544 (expected: <= cluster size 65536)"),
                Arguments.of(0x08, 8, 65537L, f, "backing_file_offset: 65537"),
                Arguments.of(0x68, 1, 2L, u, "compression_type: 2"),
                Arguments.of(0x68, 1, 1L, f, "compression_type: 1 (expected: 0 unless incompatible bit 3"),
                Arguments.of(0x48, 8, 8L, f, "incompatible_features: bit 3 (compression type) set"),
                Arguments.of(0x48, 8, 0x20L, u, "incompatible_features: 0x20 has unknown bit 5"),
                Arguments.of(0x48, 8, 4L, u, "incompatible_features: bit 2 (external data file)"),
                Arguments.of(0x58, 8, 2L, f, "autoclear_features: bit 1 (raw external data)"),
                Arguments.of(0x60, 4, 7L, f, "refcount_order: 7 (expected: 0..6)"),
                Arguments.of(0x20, 4, 1L, u, "crypt_method: 1 (AES)"),
                Arguments.of(0x20, 4, 2L, u, "crypt_method: 2 (LUKS)"),
                Arguments.of(0x38, 4, 0L, f, "refcount_table_clusters: 0 (expected: >= 1)"),
                Arguments.of(0x38, 4, 129L, f, "refcount_table_clusters: 129 (expected: <= 128"),
                Arguments.of(0x30, 8, 0x10200L, f, "refcount_table_offset: 0x10200 (expected: aligned"),
                Arguments.of(0x30, 8, 0x7fffffffffff0000L, f, "refcount_table_offset: 0x7fffffffffff0000 (expected: "
                        + "offset + 65536 bytes"),
                Arguments.of(0x3c, 4, 65537L, f, "nb_snapshots: 65537 (expected: <= 65536)"),
                Arguments.of(0x40, 8, 0x123L, f, "snapshots_offset: 0x123"),
                Arguments.of(0x24, 4, 4194305L, f, "l1_size: 4194305 (expected: <= 4194304"),
                Arguments.of(0x24, 4, 0L, f, "l1_size: 0 (expected: >= 1 for size 67108864)"),
                Arguments.of(0x28, 8, 0x30008L, f, "l1_table_offset: 0x30008"),
                Arguments.of(0x28, 8, 0xffffffffffff0000L, f, "l1_table_offset: 0xffffffffffff0000"),
                Arguments.of(0x18, 8, -1L, f, "size: 18446744073709551615"),
                Arguments.of(0x18, 8, 1L << 62, f, "size: 4611686018427387904 (expected: an L1 index"),
                Arguments.of(0x74, 4, 0x10000L, f, "header extension 0x6803f857 length: 65536"));
    }

    @ParameterizedTest(name = "[{index}] offset 0x{0} = {2}: {4}")
    @MethodSource("mutations")
    void mutatedFieldShouldBeRefusedNamingFieldAndValue(int offset, int width, long value, BlockErrorKind kind,
            String message) {
        ByteBuffer b = HeaderFixtures.cluster(HeaderFixtures.QEMU_64M_V3);
        switch (width) {
            case 1 -> b.put(offset, (byte) value);
            case 4 -> b.putInt(offset, (int) value);
            default -> b.putLong(offset, value);
        }
        BlockException e = assertThrows(BlockException.class, () -> decode(b));
        assertEquals(kind, e.kind(), e.getMessage());
        assertTrue(e.getMessage().contains(message), e.getMessage());
        assertTrue(e.getMessage().contains("image=" + IMAGE), e.getMessage());
    }

    @Test
    void fieldErrorShouldCarryFieldFileOffset() {
        ByteBuffer b = HeaderFixtures.cluster(HeaderFixtures.QEMU_64M_V3);
        b.putInt(0x60, 9);
        BlockException e = assertThrows(BlockException.class, () -> decode(b));
        assertEquals(0x60, e.offset());
    }

    @Test
    void unknownIncompatibleBitShouldBeNamedFromFeatureTable() throws BlockException {
        List<FeatureName> table = List.of(new FeatureName(0, 5, "shiny feature"));
        Qcow2Header h = qemuHeader().withExtensions(List.of(HeaderEncoder.featureTable(table)));
        ByteBuffer b = h.encode(65536);
        b.putLong(0x48, 0x60L); // bits 5 and 6
        BlockException e = assertThrows(BlockException.class, () -> decode(b));
        assertEquals(BlockErrorKind.UNSUPPORTED_FEATURE, e.kind());
        assertTrue(e.getMessage().contains("bit 5 (\"shiny feature\"), bit 6"), e.getMessage());
    }

    @Test
    void unknownIncompatibleBitShouldWinOverBrokenExtensionFraming() {
        ByteBuffer b = HeaderFixtures.cluster(HeaderFixtures.QEMU_64M_V3);
        b.putInt(0x74, 0x7fffffff);
        b.putLong(0x48, 1L << 40);
        BlockException e = assertThrows(BlockException.class, () -> decode(b));
        assertTrue(e.getMessage().contains("unknown bit 40"), e.getMessage());
    }

    @Test
    void extendedL2WithSmallClustersShouldBeRefused() {
        Qcow2Header h = new Qcow2Header(3, 0, 0, 13, 1 << 20, 0, 1, 0x6000, 0x2000, 1, 0, 0,
                FeatureBits.INCOMPAT_EXTL2, 0, 0, 4, 112, 0, null, List.of(), null);
        BlockException e = assertThrows(BlockException.class, () -> decode(h.encode(8192)));
        assertTrue(e.getMessage().contains("cluster_bits: 13 (expected: >= 14 with extended L2"), e.getMessage());
    }

    @Test
    void zstdHeaderShouldDecodeWithBit3() throws BlockException {
        ByteBuffer b = HeaderFixtures.cluster(HeaderFixtures.QEMU_64M_V3);
        b.put(0x68, (byte) 1);
        b.putLong(0x48, FeatureBits.INCOMPAT_COMPRESSION);
        assertEquals("zstd", decode(b).compressionTypeName());
    }

    @Test
    void dirtyCorruptAndExtendedL2BitsShouldBeReported() throws BlockException {
        ByteBuffer b = HeaderFixtures.cluster(HeaderFixtures.QEMU_64M_V3);
        b.putLong(0x48, FeatureBits.INCOMPAT_DIRTY | FeatureBits.INCOMPAT_CORRUPT | FeatureBits.INCOMPAT_EXTL2);
        Qcow2Header h = decode(b);
        assertTrue(h.isDirty() && h.isCorrupt() && h.hasExtendedL2());
        assertEquals(12, h.l2Bits());
    }

    @Test
    void extensionRunningPastAreaShouldBeRefused() {
        ByteBuffer b = HeaderFixtures.v3WithExtensions();
        b.putInt(0xac, 0x20); // unknown extension claims 32 bytes; the area ends at 0xc0
        BlockException e = assertThrows(BlockException.class, () -> decode(b));
        assertTrue(e.getMessage().contains("header extension 0x12345678 length: 32 (expected: <= 16"), e.getMessage());
        assertEquals(0xac, e.offset());
    }

    @Test
    void extensionFramingPastAreaShouldBeRefused() {
        ByteBuffer b = HeaderFixtures.v3WithExtensions();
        b.putLong(0x08, 0xbc); // area ends 4 bytes into the end marker's framing
        BlockException e = assertThrows(BlockException.class, () -> decode(b));
        assertTrue(e.getMessage().contains("header extension at 0xb8: 8 bytes of framing"), e.getMessage());
    }

    @Test
    void backingNamePastClusterZeroShouldBeRefused() {
        ByteBuffer b = HeaderFixtures.v3WithExtensions();
        b.putLong(0x08, 4090);
        b.putInt(0x10, 10);
        BlockException e = assertThrows(BlockException.class, () -> decode(b));
        assertTrue(e.getMessage().contains("backing_file_size: 10 (expected: <= 6"), e.getMessage());
    }

    @Test
    void backingNameLongerThan1023ShouldBeRefused() {
        ByteBuffer b = HeaderFixtures.v3WithExtensions();
        b.putInt(0x10, 1024);
        BlockException e = assertThrows(BlockException.class, () -> decode(b));
        assertTrue(e.getMessage().contains("backing_file_size: 1024 (expected: <= 1023"), e.getMessage());
    }

    @Test
    void backingNameWithInvalidUtf8ShouldBeRefused() {
        ByteBuffer b = HeaderFixtures.v3WithExtensions();
        b.put(HeaderFixtures.EXT_BACKING_NAME_OFFSET, (byte) 0xff);
        BlockException e = assertThrows(BlockException.class, () -> decode(b));
        assertTrue(e.getMessage().contains("backing file name: 10 bytes of invalid UTF-8"), e.getMessage());
    }

    @Test
    void backingFormatOf16BytesShouldBeRefused() {
        Qcow2Header h = qemuHeader().withExtensions(List.of(
                new HeaderExtension(HeaderExtension.BACKING_FORMAT, new byte[16])));
        BlockException e = assertThrows(BlockException.class, () -> decode(h.encode(65536)));
        assertTrue(e.getMessage().contains("backing format extension length: 16 (expected: <= 15)"), e.getMessage());
    }

    @Test
    void duplicateKnownExtensionShouldBeRefused() {
        HeaderExtension format = new HeaderExtension(HeaderExtension.BACKING_FORMAT, "raw".getBytes());
        ByteBuffer b = qemuHeader().withExtensions(List.of(format)).encode(65536);
        b.position(0x70 + 16).put(b.duplicate().position(0x70).limit(0x80)).clear(); // copy it once more
        BlockException e = assertThrows(BlockException.class, () -> decode(b));
        assertTrue(e.getMessage().contains("header extension 0xe2792aca (backing format): repeated"), e.getMessage());
    }

    @Test
    void encryptionPointerWithoutEncryptionShouldBeRefused() {
        Qcow2Header h = qemuHeader().withExtensions(List.of(
                new HeaderExtension(HeaderExtension.CRYPTO_HEADER, new byte[16])));
        BlockException e = assertThrows(BlockException.class, () -> decode(h.encode(65536)));
        assertTrue(e.getMessage().contains("full disk encryption header pointer extension: present"), e.getMessage());
    }

    static Stream<Arguments> bitmapsMutations() {
        return Stream.of(
                Arguments.of(0x8c, 4, 16L, "bitmaps extension length: 16 (expected: 24)"),
                Arguments.of(0x94, 4, 1L, "bitmaps extension reserved: 0x1 (expected: 0)"),
                Arguments.of(0x90, 4, 0L, "nb_bitmaps: 0 (expected: 1..65535)"),
                Arguments.of(0x90, 4, 65536L, "nb_bitmaps: 65536"),
                Arguments.of(0x98, 8, 67107841L, "bitmap_directory_size: 67107841 (expected: <= 67107840)"),
                Arguments.of(0xa0, 8, 0x5008L, "bitmap_directory_offset: 0x5008 (expected: aligned"),
                Arguments.of(0xa0, 8, 0xfffffffffffff000L, "bitmap_directory_offset: 0xfffffffffffff000 (expected: "
                        + "offset + 32 bytes"));
    }

    @ParameterizedTest(name = "[{index}] {3}")
    @MethodSource("bitmapsMutations")
    void mutatedBitmapsExtensionShouldBeRefused(int offset, int width, long value, String message) {
        ByteBuffer b = HeaderFixtures.v3WithExtensions();
        if (width == 4) {
            b.putInt(offset, (int) value);
        } else {
            b.putLong(offset, value);
        }
        BlockException e = assertThrows(BlockException.class, () -> decode(b));
        assertEquals(BlockErrorKind.INVALID_FORMAT, e.kind());
        assertTrue(e.getMessage().contains(message), e.getMessage());
    }

    @Test
    void bitmapsExtensionWithoutAutoclearBitShouldBeIgnoredNotValidated() throws BlockException {
        ByteBuffer b = HeaderFixtures.v3WithExtensions();
        b.putLong(0x58, 0); // autoclear bit 0 clear: a program without bitmap support wrote the image
        b.putInt(0x94, 7); // garbage QEMU does not look at
        Qcow2Header h = decode(b);
        assertFalse(h.bitmapsConsistent());
        assertEquals(1, h.bitmapsExtension().nbBitmaps());
    }

    @Test
    void fileShorterThanHeaderShouldBeRefused() {
        ByteBuffer b = HeaderFixtures.cluster(HeaderFixtures.QEMU_64M_V3);
        BlockException e = assertThrows(BlockException.class, () -> Qcow2Header.decode(b, 104, IMAGE));
        assertTrue(e.getMessage().contains("file size: 104 (expected: >= header_length 112)"), e.getMessage());
        e = assertThrows(BlockException.class, () -> Qcow2Header.decode(b, 50, IMAGE));
        assertTrue(e.getMessage().contains("file size: 50 (expected: >= 72"), e.getMessage());
    }

    @Test
    void shortBufferShouldReadAsZeroPaddedCluster() throws BlockException {
        byte[] v2 = HexFormat.of().parseHex(HeaderFixtures.QEMU_64M_V2);
        Qcow2Header h = Qcow2Header.decode(ByteBuffer.wrap(v2), v2.length, IMAGE);
        assertEquals(2, h.version());
    }

    @Test
    void readShouldDecodeFileShorterThanClusterZero() throws IOException {
        byte[] v3 = Arrays.copyOf(HexFormat.of().parseHex(HeaderFixtures.QEMU_64M_V3), 0x200);
        Qcow2Header h = Qcow2Header.read(new MemoryImageFile(v3), IMAGE);
        assertEquals(qemuHeader(), h);
    }

    @Test
    void readShouldRefuseHugeClusterBitsBeforeAllocating() {
        byte[] v3 = HexFormat.of().parseHex(HeaderFixtures.QEMU_64M_V3);
        ByteBuffer.wrap(v3).putInt(0x14, 31);
        BlockException e = assertThrows(BlockException.class, () -> Qcow2Header.read(new MemoryImageFile(v3),
                IMAGE));
        assertTrue(e.getMessage().contains("cluster_bits: 31"), e.getMessage());
    }

    @Test
    void readOfNonQcow2FileShouldReportMagic() {
        BlockException e = assertThrows(BlockException.class,
                () -> Qcow2Header.read(MemoryImageFile.ofSize(1 << 20), IMAGE));
        assertTrue(e.getMessage().contains("magic: 0x00000000 (expected: 0x514649fb)"), e.getMessage());
    }

    @Test
    void encodeShouldRefuseHeaderThatDoesNotFit() {
        Qcow2Header h = new Qcow2Header(3, 0, 0, 9, 1 << 20, 0, 32, 0x600, 0x200, 1, 0, 0, 0, 0, 0, 4, 112, 0,
                null, List.of(HeaderEncoder.featureTable(FeatureBits.qemuFeatureTable())), "base");
        assertThrows(IllegalArgumentException.class, () -> h.encode(512));
    }

    @Test
    void encodeShouldRefuseInconsistentHeaderLength() {
        Qcow2Header h = new Qcow2Header(3, 0, 0, 16, 1 << 20, 0, 1, 0x30000, 0x10000, 1, 0, 0, 0, 0, 0, 4, 120, 0,
                null, List.of(), null);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> h.encode(65536));
        assertTrue(e.getMessage().contains("header_length: 120"), e.getMessage());
    }

    @Test
    void minimalV3HeaderOf104BytesShouldRoundTrip() throws BlockException {
        Qcow2Header h = new Qcow2Header(3, 0, 0, 16, 64L << 20, 0, 1, 0x30000, 0x10000, 1, 0, 0, 0, 0, 0, 4, 104, 0,
                null, List.of(new HeaderExtension(0x7777, new byte[3])), null);
        ByteBuffer b = h.encode(65536);
        assertEquals(0x7777, b.getInt(104));
        assertEquals(h, decode(b));
    }

    @Test
    void headerRecordShouldCompareArraysByContent() {
        Qcow2Header a = qemuHeader();
        Qcow2Header b = qemuHeader();
        assertEquals(a, b);
        assertEquals(a.hashCode(), b.hashCode());
        assertEquals(new HeaderExtension(1, new byte[] {1}), new HeaderExtension(1, new byte[] {1}));
    }
}
