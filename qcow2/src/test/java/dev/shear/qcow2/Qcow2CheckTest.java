package dev.shear.qcow2;

import static dev.shear.qcow2.Qcow2CheckFixtures.COPIED;
import static dev.shear.qcow2.Qcow2CheckFixtures.base;
import static dev.shear.qcow2.Qcow2CheckFixtures.check;
import static dev.shear.qcow2.Qcow2CheckFixtures.fill;
import static dev.shear.qcow2.Qcow2CheckFixtures.firstRefcountBlock;
import static dev.shear.qcow2.Qcow2CheckFixtures.l2EntryOffset;
import static dev.shear.qcow2.Qcow2CheckFixtures.poke;
import static dev.shear.qcow2.Qcow2CheckFixtures.pokeLong;
import static dev.shear.qcow2.Qcow2CheckFixtures.readLong;
import static dev.shear.qcow2.Qcow2CheckFixtures.setRefcount16;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@link Qcow2Check} on images built in Java, clean and damaged one condition at a time. Every row was
 * compared by hand with QEMU 7.2's {@code qemu-img check} on the same file (written to /tmp by a
 * throw-away harness): the counters, statistics, exit status and stderr lines below are qemu-img's.
 */
class Qcow2CheckTest {
    @TempDir
    Path dir;

    /** Changes the file after the fixture wrote it. */
    @FunctionalInterface
    interface Damage {
        void apply(Path p, Qcow2TestImage.Layout layout) throws IOException;
    }

    /** qemu-img's verdict on one image. */
    record Expected(long corruptions, long leaks, long checkErrors, int exitCode, long allocated, long total,
            long fragmented, long compressed, long imageEnd, List<String> messages) {
    }

    static Expected expect(long c, long l, long e, int exit, long allocated, long total, long frag, long comp,
            long end, String... messages) {
        return new Expected(c, l, e, exit, allocated, total, frag, comp, end, List.of(messages));
    }

    static Arguments row(String name, Supplier<Qcow2TestImage> image, Damage damage, Expected expected) {
        return Arguments.of(name, image, damage, expected);
    }

    static Stream<Arguments> cleanImages() {
        return Stream.of(
                row("64k clusters, 16-bit refcounts", Qcow2CheckFixtures::base, null,
                        expect(0, 0, 0, 0, 3, 1024, 0, 0, 524288)),
                row("512-byte clusters", () -> Qcow2TestImage.create(1 << 20).clusterBits(9)
                        .write(0, fill(4096, 3)).write(700000, fill(3000, 4)), null,
                        expect(0, 0, 0, 0, 15, 2048, 0, 0, 10752)),
                row("4k clusters, 1-bit refcounts", () -> Qcow2TestImage.create(8 << 20).clusterBits(12)
                        .refcountOrder(0).write(0, fill(8192, 3)).write(5 << 20, fill(3000, 4)), null,
                        expect(0, 0, 0, 0, 3, 2048, 0, 0, 36864)),
                row("2M clusters, 64-bit refcounts", () -> Qcow2TestImage.create(64 << 20).clusterBits(21)
                        .refcountOrder(6).write(0, fill(8192, 3)).write(40 << 20, fill(3000, 4)), null,
                        expect(0, 0, 0, 0, 2, 32, 0, 0, 14680064)),
                row("8-bit refcounts with a snapshot", () -> Qcow2TestImage.create(8 << 20).refcountOrder(3)
                        .write(0, fill(65536, 3)).snapshot("1", "snap1").write(0, fill(4096, 5))
                        .write(2 << 20, fill(65536, 6)), null,
                        expect(0, 0, 0, 0, 2, 128, 0, 0, 720896)),
                row("deflate-compressed clusters", () -> Qcow2TestImage.create(8 << 20)
                        .writeCompressed(0, fill(65536, 7)).writeCompressed(65536, new byte[100])
                        .writeCompressed(3 << 20, fill(1000, 9)).write(4 << 20, fill(65536, 1)), null,
                        expect(0, 0, 0, 0, 4, 128, 3, 3, 458752)),
                row("zstd-compressed clusters", () -> Qcow2TestImage.create(8 << 20).compression("zstd")
                        .writeCompressed(0, fill(65536, 7)).writeCompressed(65536, fill(5, 8)), null,
                        expect(0, 0, 0, 0, 2, 128, 2, 2, 393216)),
                row("two bitmaps (auto, disabled)", () -> base().bitmap("b1", 16, 2).bitmap("b2", 20, 0), null,
                        expect(0, 0, 0, 0, 3, 1024, 0, 0, 720896)),
                row("bitmap in use", () -> base().bitmap("b1", 16, 3), null,
                        expect(0, 0, 0, 0, 3, 1024, 0, 0, 655360)),
                row("extended L2", () -> Qcow2TestImage.create(8 << 20).extendedL2(true)
                        .write(4096, fill(4096, 1)).zeroes(65536, 65536, false), null,
                        expect(0, 0, 0, 0, 1, 128, 0, 0, 393216)),
                row("version 2", () -> Qcow2TestImage.create(8 << 20).version(2).write(0, fill(100, 1)), null,
                        expect(0, 0, 0, 0, 1, 128, 0, 0, 393216)),
                row("zero cluster keeping its allocation", () -> Qcow2TestImage.create(8 << 20)
                        .write(0, fill(65536, 1)).write(65536, fill(65536, 1)).zeroes(0, 65536, true), null,
                        expect(0, 0, 0, 0, 2, 128, 0, 0, 458752)),
                row("compressed range ending less than a cluster past EOF",
                        () -> Qcow2TestImage.create(8 << 20).writeCompressed(0, fill(65536, 7)),
                        (p, l) -> pokeLong(p, l2EntryOffset(l, 0), (1L << 62) | (3L << 54) | (l.fileSize() - 0x10)),
                        expect(0, 0, 0, 0, 1, 128, 1, 1, 393216)));
    }

    static Stream<Arguments> damagedImages() {
        return Stream.of(
                row("reference dropped: leak only", Qcow2CheckFixtures::base,
                        (p, l) -> pokeLong(p, l2EntryOffset(l, 16), 0),
                        expect(0, 1, 0, 3, 2, 1024, 1, 0, 524288, "Leaked cluster 6 refcount=1 reference=0")),
                row("refcount too high", Qcow2CheckFixtures::base,
                        (p, l) -> setRefcount16(p, l, l.hostOffset(0) >>> 16, 2),
                        expect(1, 1, 0, 2, 3, 1024, 0, 0, 524288, "Leaked cluster 5 refcount=2 reference=1",
                                "ERROR OFLAG_COPIED data cluster: l2_entry=8000000000050000 refcount=2")),
                row("refcount 0 of a referenced cluster", Qcow2CheckFixtures::base,
                        (p, l) -> setRefcount16(p, l, l.hostOffset(0) >>> 16, 0),
                        expect(2, 0, 0, 2, 3, 1024, 0, 0, 524288, "ERROR cluster 5 refcount=0 reference=1",
                                "ERROR OFLAG_COPIED data cluster: l2_entry=8000000000050000 refcount=0")),
                row("cluster referenced twice", Qcow2CheckFixtures::base,
                        (p, l) -> pokeLong(p, l2EntryOffset(l, 16), COPIED | l.hostOffset(0)),
                        expect(1, 1, 0, 2, 3, 1024, 2, 0, 524288, "ERROR cluster 5 refcount=1 reference=2",
                                "Leaked cluster 6 refcount=1 reference=0")),
                row("L2 entry past the end of the file", Qcow2CheckFixtures::base,
                        (p, l) -> pokeLong(p, l2EntryOffset(l, 16), COPIED | 0x1000000L),
                        expect(2, 1, 0, 2, 3, 1024, 2, 0, 524288,
                                "ERROR: counting reference for region exceeding the end of the file by one cluster "
                                        + "or more: offset 0x1000000 size 0x10000",
                                "Leaked cluster 6 refcount=1 reference=0",
                                "ERROR OFLAG_COPIED data cluster: l2_entry=8000000001000000 refcount=0")),
                row("unaligned L2 table offset", Qcow2CheckFixtures::base,
                        (p, l) -> pokeLong(p, l.l1Offset(), COPIED | (l.l2Offsets().get(0L) + 0x200)),
                        expect(129, 2, 0, 2, 64, 1024, 63, 0, 524288,
                                "ERROR l2_offset=40200: Table is not cluster aligned; L1 entry corrupted",
                                "ERROR found l2 entry with reserved bits set: 101010101010101")),
                row("unaligned data offset", Qcow2CheckFixtures::base,
                        (p, l) -> pokeLong(p, l2EntryOffset(l, 0), COPIED | (l.hostOffset(0) + 0x200)),
                        expect(2, 0, 0, 2, 3, 1024, 1, 0, 524288,
                                "ERROR offset=50200: Data cluster is not properly aligned; L2 entry corrupted.",
                                "ERROR cluster 6 refcount=1 reference=2")),
                row("unaligned preallocated zero cluster",
                        () -> Qcow2TestImage.create(8 << 20).write(0, fill(65536, 1)).zeroes(0, 65536, true),
                        (p, l) -> pokeLong(p, l2EntryOffset(l, 0),
                                COPIED | 1 | ((readLong(p, l2EntryOffset(l, 0)) & 0x00fffffffffffe00L) + 0x200)),
                        expect(2, 0, 0, 2, 1, 128, 0, 0, 458752,
                                "ERROR offset=50200: Preallocated cluster is not properly aligned; L2 entry "
                                        + "corrupted.",
                                "ERROR cluster 6 refcount=0 reference=1")),
                row("copied flag clear with refcount 1", Qcow2CheckFixtures::base,
                        (p, l) -> pokeLong(p, l2EntryOffset(l, 0), l.hostOffset(0)),
                        expect(1, 0, 0, 2, 3, 1024, 0, 0, 524288,
                                "ERROR OFLAG_COPIED data cluster: l2_entry=50000 refcount=1")),
                row("L1 copied flag clear with refcount 1", Qcow2CheckFixtures::base,
                        (p, l) -> pokeLong(p, l.l1Offset(), l.l2Offsets().get(0L)),
                        expect(1, 0, 0, 2, 3, 1024, 0, 0, 524288,
                                "ERROR OFLAG_COPIED L2 cluster: l1_index=0 l1_entry=40000 refcount=1")),
                row("copied flag set on a cluster shared with a snapshot",
                        () -> Qcow2TestImage.create(8 << 20).write(0, fill(65536, 3)).snapshot("1", "s")
                                .write(1 << 20, fill(4096, 1)),
                        (p, l) -> pokeLong(p, l2EntryOffset(l, 0), COPIED | readLong(p, l2EntryOffset(l, 0))),
                        expect(1, 0, 0, 2, 2, 128, 0, 0, 655360,
                                "ERROR OFLAG_COPIED data cluster: l2_entry=8000000000070000 refcount=2")),
                row("copied flag on a compressed entry",
                        () -> Qcow2TestImage.create(8 << 20).writeCompressed(0, fill(65536, 7))
                                .writeCompressed(65536, new byte[100]),
                        (p, l) -> pokeLong(p, l2EntryOffset(l, 1), COPIED | readLong(p, l2EntryOffset(l, 1))),
                        expect(1, 0, 0, 2, 2, 128, 2, 2, 393216,
                                "ERROR: coffset=0x501a2: copied flag must never be set for compressed clusters")),
                row("refcount block outside the image", Qcow2CheckFixtures::base,
                        (p, l) -> pokeLong(p, l.refcountTableOffset() + 8, 0x10000000L),
                        expect(1, 0, 0, 2, 3, 1024, 0, 0, 524288, "ERROR refcount block 1 is outside image")),
                row("refcount block used twice", Qcow2CheckFixtures::base,
                        (p, l) -> pokeLong(p, l.refcountTableOffset() + 8, firstRefcountBlock(p, l)),
                        expect(2, 0, 0, 2, 3, 1024, 0, 0, 524288, "ERROR refcount block 1 refcount=2",
                                "ERROR cluster 2 refcount=1 reference=2")),
                row("refcount table entry with reserved bits", Qcow2CheckFixtures::base,
                        (p, l) -> pokeLong(p, l.refcountTableOffset() + 8, 1),
                        expect(1, 0, 0, 2, 3, 1024, 0, 0, 524288,
                                "ERROR refcount table entry 1 has reserved bits set")),
                row("unaligned refcount block: refcounts unreadable", Qcow2CheckFixtures::base,
                        (p, l) -> pokeLong(p, l.refcountTableOffset(), firstRefcountBlock(p, l) + 0x200),
                        expect(1, 0, 8, 1, 3, 1024, 0, 0, 65536,
                                "ERROR refcount block 0 is not cluster aligned; refcount table entry corrupted",
                                "qcow2: Image is corrupt: Refblock offset 0x20200 unaligned (reftable index: 0); "
                                        + "further non-fatal corruption events will be suppressed",
                                "Can't get refcount for cluster 0: Input/output error")),
                row("L2 entry with reserved bits", Qcow2CheckFixtures::base,
                        (p, l) -> pokeLong(p, l2EntryOffset(l, 0), COPIED | 2 | l.hostOffset(0)),
                        expect(1, 0, 0, 2, 3, 1024, 0, 0, 524288,
                                "ERROR found l2 entry with reserved bits set: 8000000000050002")),
                row("L1 entry with reserved bits", Qcow2CheckFixtures::base,
                        (p, l) -> pokeLong(p, l.l1Offset(), COPIED | 1 | l.l2Offsets().get(0L)),
                        expect(1, 0, 0, 2, 3, 1024, 0, 0, 524288,
                                "ERROR found L1 entry with reserved bits set: 8000000000040001")),
                row("bitmaps autoclear bit cleared: bitmap clusters leak",
                        () -> base().bitmap("b1", 16, 2), (p, l) -> pokeLong(p, 88, 0),
                        expect(0, 2, 0, 3, 3, 1024, 0, 0, 655360, "Leaked cluster 4 refcount=1 reference=0",
                                "Leaked cluster 5 refcount=1 reference=0")),
                row("snapshot L1 table unaligned",
                        () -> Qcow2TestImage.create(8 << 20).write(0, fill(65536, 3)).snapshot("1", "s"),
                        (p, l) -> pokeLong(p, readLong(p, 64), readLong(p, readLong(p, 64)) + 0x200),
                        expect(1, 3, 0, 2, 1, 128, 0, 0, 589824,
                                "ERROR snapshot 1 (s) l1_offset=0x40200: L1 table is not cluster aligned; snapshot "
                                        + "table entry corrupted",
                                "Leaked cluster 4 refcount=1 reference=0")),
                row("snapshot entry without the v3 extra data",
                        () -> Qcow2TestImage.create(8 << 20).write(0, fill(65536, 3)).snapshot("1", "s"),
                        (p, l) -> poke(p, readLong(p, 64) + 36, ByteBuffer.allocate(4).putInt(0, 8)),
                        expect(1, 0, 0, 2, 1, 128, 0, 0, 589824, "ERROR snapshot table entry 0 is incomplete")),
                row("1-bit refcount overflow",
                        () -> Qcow2TestImage.create(8 << 20).clusterBits(12).refcountOrder(0)
                                .write(0, fill(4096, 3)).write(8192, fill(4096, 3)),
                        (p, l) -> pokeLong(p, l2EntryOffset(l, 2), COPIED | l.hostOffset(0)),
                        expect(1, 1, 0, 2, 2, 2048, 1, 0, 28672, "ERROR: overflow cluster offset=0x5000",
                                "Use qemu-img amend to increase the refcount entry width or qemu-img convert to "
                                        + "create a clean copy if the image cannot be opened for writing",
                                "Leaked cluster 6 refcount=1 reference=0")),
                row("extended L2: allocated and zero bit both set",
                        () -> Qcow2TestImage.create(8 << 20).extendedL2(true).write(4096, fill(4096, 1)),
                        (p, l) -> pokeLong(p, l.l2Offsets().get(0L) + 8, 0x0000000300000002L),
                        expect(1, 0, 0, 2, 1, 128, 0, 0, 393216,
                                "ERROR offset=50000: Allocated cluster has corrupted subcluster allocation bitmap")),
                row("extended L2: allocation bits on an unallocated cluster",
                        () -> Qcow2TestImage.create(8 << 20).extendedL2(true).write(4096, fill(4096, 1)),
                        (p, l) -> pokeLong(p, l.l2Offsets().get(0L) + 16 + 8, 1),
                        expect(1, 0, 0, 2, 1, 128, 0, 0, 393216,
                                "ERROR: Unallocated cluster has non-zero subcluster allocation map")),
                row("dirty lazy-refcount image is checked all the same",
                        () -> base().compatibleBits(1).incompatibleBits(1),
                        (p, l) -> setRefcount16(p, l, l.hostOffset(0) >>> 16, 0),
                        expect(2, 0, 0, 2, 3, 1024, 0, 0, 524288, "ERROR cluster 5 refcount=0 reference=1")));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cleanImages")
    void cleanImageShouldHaveNoFindings(String name, Supplier<Qcow2TestImage> image, Damage damage, Expected e)
            throws IOException {
        CheckResult r = run(image, damage);
        assertTrue(r.isClean(), () -> name + ": " + r);
        assertMatches(e, r);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("damagedImages")
    void damagedImageShouldBeReportedAsQemuImgDoes(String name, Supplier<Qcow2TestImage> image, Damage damage,
            Expected e) throws IOException {
        assertMatches(e, run(image, damage));
    }

    @Test
    void badTableOfInUseBitmapShouldFailTheCheck() throws IOException {
        // qemu-img check: "Check failed: Invalid argument", exit 1 (an in-use bitmap is not loaded at open).
        CheckResult r = run(() -> base().bitmap("b1", 16, 3), (p, l) -> pokeLong(p, bitmapTable(p), 0x200));
        assertEquals("Invalid argument", r.failure());
        assertEquals(1, r.exitCode());
    }

    @Test
    void badTableOfLoadedBitmapShouldFailLikeQemuOpen() {
        // qemu-img: "Could not open ...: Could not read bitmap_table table from image for bitmap 'b1': ..."
        BlockException e = assertThrows(BlockException.class, () -> run(() -> base().bitmap("b1", 16, 0),
                (p, l) -> pokeLong(p, bitmapTable(p), 0x200)));
        assertEquals("Could not read bitmap_table table from image for bitmap 'b1': Invalid argument", e.detail());
    }

    @Test
    void brokenBitmapDirectoryShouldFailLikeQemuOpen() {
        BlockException e = assertThrows(BlockException.class, () -> run(() -> base().bitmap("b1", 16, 2),
                (p, l) -> pokeLong(p, bitmapDirectory(p), 0x200)));
        assertEquals("Bitmap 'b1' doesn't satisfy the constraints", e.detail());
    }

    @Test
    void snapshotWithTooMuchExtraDataShouldFailTheCheck() throws IOException {
        CheckResult r = run(() -> Qcow2TestImage.create(8 << 20).write(0, fill(65536, 3)).snapshot("1", "s"),
                (p, l) -> poke(p, readLong(p, 64) + 36, ByteBuffer.allocate(4).putInt(0, 2000)));
        assertEquals("File too large", r.failure());
        assertEquals(1, r.exitCode());
        assertEquals(List.of("ERROR failed to read the snapshot table: Too much extra metadata in snapshot table "
                + "entry 0", "You can force-remove this extra metadata with qemu-img check -r all"), r.messages());
    }

    @Test
    void checkShouldNeverWrite() throws IOException {
        Path p = dir.resolve("ro.qcow2");
        Qcow2TestImage.Layout l = base().writeTo(p);
        setRefcount16(p, l, l.hostOffset(0) >>> 16, 0);
        byte[] before = java.nio.file.Files.readAllBytes(p);
        try (ImageFile f = ImageFile.open(p, false)) {
            Qcow2Check.check(f, "ro.qcow2");
        }
        assertEquals(java.util.Arrays.hashCode(before), java.util.Arrays.hashCode(java.nio.file.Files.readAllBytes(p)));
    }

    @Test
    void sinkShouldSeeEveryMessageInOrder() throws IOException {
        Path p = dir.resolve("s.qcow2");
        Qcow2TestImage.Layout l = base().writeTo(p);
        pokeLong(p, l.l1Offset(), COPIED | (l.l2Offsets().get(0L) + 0x200));
        List<String> seen = new ArrayList<>();
        CheckResult r;
        try (ImageFile f = ImageFile.open(p, false)) {
            r = Qcow2Check.check(f, "s.qcow2", seen::add);
        }
        assertEquals(r.messages(), seen);
        assertEquals(131, seen.size());   // 129 errors + 2 leaks, one line each
    }

    private CheckResult run(Supplier<Qcow2TestImage> image, Damage damage) throws IOException {
        Path p = dir.resolve("t.qcow2");
        Qcow2TestImage.Layout layout = image.get().writeTo(p);
        if (damage != null) {
            damage.apply(p, layout);
        }
        return check(p);
    }

    private static void assertMatches(Expected e, CheckResult r) {
        String all = String.join("\n", r.messages());
        assertNull(r.failure(), all);
        assertEquals(e.corruptions(), r.corruptions(), () -> "corruptions\n" + all);
        assertEquals(e.leaks(), r.leaks(), () -> "leaks\n" + all);
        assertEquals(e.checkErrors(), r.checkErrors(), () -> "check errors\n" + all);
        assertEquals(e.exitCode(), r.exitCode(), "exit code");
        assertEquals(e.allocated(), r.allocatedClusters(), "allocated clusters");
        assertEquals(e.total(), r.totalClusters(), "total clusters");
        assertEquals(e.fragmented(), r.fragmentedClusters(), "fragmented clusters");
        assertEquals(e.compressed(), r.compressedClusters(), "compressed clusters");
        if (e.imageEnd() >= 0) {
            assertEquals(e.imageEnd(), r.imageEndOffset(), "image end offset");
        }
        for (int i = 0; i < e.messages().size(); i++) {
            assertEquals(e.messages().get(i), r.messages().get(i), "message " + i + "\n" + all);
        }
    }

    static long bitmapDirectory(Path p) throws IOException {
        try (ImageFile f = ImageFile.open(p, false)) {
            return Qcow2Header.read(f, "t").bitmapsExtension().directoryOffset();
        }
    }

    static long bitmapTable(Path p) throws IOException {
        return readLong(p, bitmapDirectory(p));
    }
}
