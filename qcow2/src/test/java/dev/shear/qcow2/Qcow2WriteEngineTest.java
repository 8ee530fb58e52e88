package dev.shear.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.Extent;
import dev.shear.block.ImageFile;
import dev.shear.block.WriteFlags;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Targeted behaviour of the write engine: corruption, feature bits, FAST_ZERO, subclusters, concurrency. */
class Qcow2WriteEngineTest {
    @TempDir
    Path dir;

    private Qcow2Image openRw(Path p) throws IOException {
        return Qcow2Image.open(ImageFile.open(p, true), Qcow2OpenOptions.defaults().withReadOnly(false));
    }

    private static byte[] fill(int n, int v) {
        byte[] b = new byte[n];
        java.util.Arrays.fill(b, (byte) v);
        return b;
    }

    private static long readLong(Path p, long offset) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "r")) {
            f.seek(offset);
            return f.readLong();
        }
    }

    private static void writeLong(Path p, long offset, long v) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.seek(offset);
            f.writeLong(v);
        }
    }

    /** Offset of guest cluster 0's L2 entry (after one write allocated it). */
    private static long l2EntryOfCluster0(Path p) throws IOException {
        Qcow2Header h;
        try (ImageFile f = ImageFile.open(p, false)) {
            h = Qcow2Header.read(f, "t");
        }
        return L1Entry.offset(readLong(p, h.l1TableOffset()));
    }

    @Test
    void imageWithCorruptBitShouldOpenReadOnlyAndSayWhy() throws IOException {
        Path p = dir.resolve("c.qcow2");
        Qcow2Creator.create(p, Qcow2CreateOptions.defaults(1 << 20));
        try (Qcow2Image img = openRw(p)) {
            img.write(0, ByteBuffer.wrap(fill(4096, 7)), 0);
        }
        Qcow2Header h;
        try (ImageFile f = ImageFile.open(p, false)) {
            h = Qcow2Header.read(f, "t");
        }
        writeLong(p, 72, h.incompatibleFeatures() | FeatureBits.INCOMPAT_CORRUPT);
        try (Qcow2Image img = openRw(p)) {
            assertFalse(img.capabilities().canWrite());
            assertNotNull(img.readOnlyReason());
            assertTrue(img.readOnlyReason().contains("corrupt bit"), img.readOnlyReason());
            BlockException e = assertThrows(BlockException.class, () -> img.write(0, ByteBuffer.allocate(1), 0));
            assertEquals(BlockErrorKind.CORRUPT_IMAGE, e.kind());
            assertTrue(e.getMessage().contains("corrupt bit"), e.getMessage());
            byte[] got = new byte[4096];
            img.read(0, ByteBuffer.wrap(got));
            assertArrayEquals(fill(4096, 7), got);
        }
    }

    @Test
    void writeOverMetadataShouldMarkCorruptRefuseWritesAndKeepReads() throws IOException {
        Path p = dir.resolve("overlap.qcow2");
        Qcow2Creator.create(p, Qcow2CreateOptions.defaults(1 << 20));
        try (Qcow2Image img = openRw(p)) {
            img.write(0, ByteBuffer.wrap(fill(65536, 1)), 0);
            img.write(65536, ByteBuffer.wrap(fill(65536, 2)), 0);
        }
        long l2 = l2EntryOfCluster0(p);
        long refcountBlock = 2L * 65536;
        writeLong(p, l2, L2Entry.standard(refcountBlock, true));   // cluster 0 now "maps" the refcount block
        Qcow2Image img = openRw(p);
        try {
            BlockException e = assertThrows(BlockException.class,
                    () -> img.write(100, ByteBuffer.wrap(fill(10, 9)), 0));
            assertEquals(BlockErrorKind.CORRUPT_IMAGE, e.kind());
            assertTrue(e.getMessage().contains("refcount block"), e.getMessage());
            assertTrue(img.isCorrupt());
            BlockException again = assertThrows(BlockException.class,
                    () -> img.write(65536, ByteBuffer.wrap(fill(10, 9)), 0));
            assertEquals(BlockErrorKind.CORRUPT_IMAGE, again.kind());
            byte[] got = new byte[65536];
            img.read(65536, ByteBuffer.wrap(got));   // a healthy range still reads
            assertArrayEquals(fill(65536, 2), got);
        } finally {
            img.close();
        }
        try (ImageFile f = ImageFile.open(p, false)) {
            assertTrue(Qcow2Header.read(f, "t").isCorrupt(), "corrupt bit on disk");
        }
    }

    @Test
    void malformedL2EntryMetByAWriteShouldSignalCorruption() throws IOException {
        Path p = dir.resolve("bad.qcow2");
        Qcow2Creator.create(p, Qcow2CreateOptions.defaults(1 << 20));
        try (Qcow2Image img = openRw(p)) {
            img.write(0, ByteBuffer.wrap(fill(512, 1)), 0);
        }
        long l2 = l2EntryOfCluster0(p);
        writeLong(p, l2, readLong(p, l2) | 0x100);   // reserved bit 8
        try (Qcow2Image img = openRw(p)) {
            BlockException e = assertThrows(BlockException.class, () -> img.write(0, ByteBuffer.allocate(8), 0));
            assertEquals(BlockErrorKind.CORRUPT_IMAGE, e.kind());
            assertTrue(e.getMessage().contains("reserved"), e.getMessage());
        }
    }

    @Test
    void firstWriteShouldClearUnknownAutoclearBitsAndTheBitmapsBit() throws IOException {
        Path p = dir.resolve("auto.qcow2");
        Qcow2Creator.create(p, Qcow2CreateOptions.defaults(1 << 20));
        writeLong(p, 88, 0x8000_0000_0000_0001L);
        try (Qcow2Image img = openRw(p)) {
            img.flush();
            assertEquals(0x8000_0000_0000_0001L, img.header().autoclearFeatures(), "no write, no change");
            img.write(0, ByteBuffer.allocate(512), 0);
            assertEquals(0, img.header().autoclearFeatures());
        }
        assertEquals(0, readLong(p, 88));
        assertTrue(Qcow2Check.check(ImageFile.open(p, false), "t").isClean());
    }

    @Test
    void lazyRefcountsShouldSetDirtyWhileOpenAndRepairAfterACrash() throws IOException {
        Path p = dir.resolve("lazy.qcow2");
        Qcow2Creator.create(p, new Qcow2CreateOptions(4 << 20, 4096, 3, 0, false, true, 16, null, null, null));
        CrashingImageFile file = new CrashingImageFile(p, Files.readAllBytes(p));
        Qcow2Image img = Qcow2Image.open(file, Qcow2OpenOptions.defaults().withReadOnly(false));
        assertFalse(img.isDirty());
        img.write(8192, ByteBuffer.wrap(fill(20_000, 3)), 0);
        assertTrue(img.isDirty());
        img.flush();
        img.write(1 << 20, ByteBuffer.wrap(fill(5000, 4)), 0);
        // crash: no close; every write made it to the disk (KEEP), refcounts possibly stale
        byte[] disk = file.crashImage(file.logSize(), CrashingImageFile.Mode.KEEP, new SplittableRandom(1));
        Path crashed = dir.resolve("crashed.qcow2");
        Files.write(crashed, disk);
        try (ImageFile f = ImageFile.open(crashed, false)) {
            assertTrue(Qcow2Header.read(f, "t").isDirty());
        }
        try (Qcow2Image again = openRw(crashed)) {
            assertFalse(again.isDirty(), "repaired on read-write open");
            byte[] got = new byte[20_000];
            again.read(8192, ByteBuffer.wrap(got));
            assertArrayEquals(fill(20_000, 3), got);
        }
        CheckResult r = Qcow2Check.check(ImageFile.open(crashed, false), "t");
        assertTrue(r.isClean(), r.messages().toString());
    }

    @Test
    void fastZeroShouldAnswerTruthfully() throws IOException {
        Path p = dir.resolve("fz.qcow2");
        Qcow2Creator.create(p, Qcow2CreateOptions.defaults(1 << 20));
        try (Qcow2Image img = openRw(p)) {
            img.write(0, ByteBuffer.wrap(fill(200_000, 5)), 0);
            img.writeZeroes(0, 65536, WriteFlags.FAST_ZERO);             // whole cluster: metadata only
            BlockException e = assertThrows(BlockException.class,
                    () -> img.writeZeroes(65536 + 100, 1000, WriteFlags.FAST_ZERO));
            assertEquals(BlockErrorKind.NOT_SUPPORTED, e.kind());
            byte[] got = new byte[1000];
            img.read(65536 + 100, ByteBuffer.wrap(got));
            assertArrayEquals(fill(1000, 5), got, "a refused FAST_ZERO changes nothing");
            img.writeZeroes(500_000, 1000, WriteFlags.FAST_ZERO);        // already zero: nothing to write
            img.writeZeroes(65536 + 100, 1000, 0);
            img.read(65536 + 100, ByteBuffer.wrap(got));
            assertArrayEquals(new byte[1000], got);
        }
        Path v2 = dir.resolve("v2.qcow2");
        Qcow2Creator.create(v2, new Qcow2CreateOptions(1 << 20, 65536, 2, 0, false, false, 16, null, null, null));
        try (Qcow2Image img = openRw(v2)) {
            img.write(0, ByteBuffer.wrap(fill(65536, 5)), 0);
            assertThrows(BlockException.class, () -> img.writeZeroes(0, 65536,
                    WriteFlags.FAST_ZERO | WriteFlags.NO_HOLE));            // v2 must write zeros to keep it
            img.writeZeroes(0, 65536, WriteFlags.FAST_ZERO);                // unmapping reads as zeros
        }
    }

    @Test
    void zeroWithNoHoleShouldKeepTheAllocation() throws IOException {
        Path p = dir.resolve("nohole.qcow2");
        Qcow2Creator.create(p, Qcow2CreateOptions.defaults(1 << 20));
        try (Qcow2Image img = openRw(p)) {
            img.write(0, ByteBuffer.wrap(fill(2 * 65536, 5)), 0);
            img.writeZeroes(0, 65536, WriteFlags.NO_HOLE);
            img.writeZeroes(65536, 65536, 0);
            assertTrue(img.map(0, 65536) instanceof ClusterMapping.Zero z && z.hostOffset() > 0, "ZERO_ALLOC");
            assertTrue(img.map(65536, 65536) instanceof ClusterMapping.Zero z && z.hostOffset() < 0, "ZERO_PLAIN");
        }
        assertTrue(Qcow2Check.check(ImageFile.open(p, false), "t").isClean());
    }

    @Test
    void subclusterWriteOverBackingShouldNotCopyTheWholeCluster() throws IOException {
        Path base = dir.resolve("base.raw");
        Files.write(base, fill(1 << 20, 0x42));
        Path p = dir.resolve("sub.qcow2");
        Qcow2Creator.create(p, new Qcow2CreateOptions(1 << 20, 65536, 3, 0, true, false, 16, null, "base.raw",
                "raw"));
        try (Qcow2Image img = openRw(p)) {
            img.write(4096, ByteBuffer.wrap(fill(4096, 1)), 0);   // observed in QEMU: alloc bits 2-3
            List<Extent> layer = new ArrayList<>();
            img.layerStatus(0, 65536, e -> layer.add(e));
            assertEquals(3, layer.size(), layer.toString());
            assertEquals(Extent.UNALLOCATED, layer.get(0).depth());
            assertEquals(4096, layer.get(1).offset());
            assertEquals(4096, layer.get(1).length());
            assertEquals(0, layer.get(1).depth());
            byte[] got = new byte[65536];
            img.read(0, ByteBuffer.wrap(got));
            for (int i = 0; i < got.length; i++) {
                assertEquals(i >= 4096 && i < 8192 ? 1 : 0x42, got[i], "byte " + i);
            }
        }
        long l2 = l2EntryOfCluster0(p);
        assertEquals(0x0cL, readLong(p, l2 + 8), "subcluster bitmap");
    }

    @Test
    void concurrentWritersAndReadersShouldNotInterfere() throws Exception {
        Path p = dir.resolve("conc.qcow2");
        int cs = 4096;
        long size = 8L << 20;
        Qcow2Creator.create(p, new Qcow2CreateOptions(size, cs, 3, 0, false, false, 16, null, null, null));
        int threads = 4;
        byte[] model = new byte[(int) size];
        try (Qcow2Image img = openRw(p)) {
            ExecutorService pool = Executors.newFixedThreadPool(threads + 2);
            List<Future<?>> fs = new ArrayList<>();
            long slice = size / threads;
            for (int t = 0; t < threads; t++) {
                int id = t;
                fs.add(pool.submit(() -> {
                    SplittableRandom rnd = new SplittableRandom(id);
                    for (int i = 0; i < 400; i++) {
                        long off = id * slice + rnd.nextLong(slice - 3 * cs);
                        byte[] d = new byte[1 + rnd.nextInt(3 * cs - 1)];
                        rnd.nextBytes(d);
                        if (rnd.nextInt(10) == 0) {
                            img.writeZeroes(off, d.length, 0);
                            java.util.Arrays.fill(d, (byte) 0);
                        } else {
                            img.write(off, ByteBuffer.wrap(d), 0);
                        }
                        synchronized (model) {
                            System.arraycopy(d, 0, model, (int) off, d.length);
                        }
                        if (i % 50 == 0) {
                            img.flush();
                        }
                    }
                    return null;
                }));
            }
            for (int r = 0; r < 2; r++) {
                fs.add(pool.submit(() -> {
                    ByteBuffer b = ByteBuffer.allocate(65536);
                    SplittableRandom rnd = new SplittableRandom(99);
                    for (int i = 0; i < 500; i++) {
                        b.clear();
                        img.read(rnd.nextLong(size - 65536), b);
                    }
                    return null;
                }));
            }
            for (Future<?> f : fs) {
                f.get(120, TimeUnit.SECONDS);
            }
            pool.shutdown();
            byte[] got = new byte[(int) size];
            img.read(0, ByteBuffer.wrap(got));
            Qcow2WriteRandomTest.assertRange(model, got, 0, "after concurrent writes");
        }
        CheckResult r = Qcow2Check.check(ImageFile.open(p, false), "t");
        assertTrue(r.isClean(), r.messages().toString());
    }
}
