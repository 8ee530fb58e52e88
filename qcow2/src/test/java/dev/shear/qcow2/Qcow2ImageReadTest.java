package dev.shear.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockDevice;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.FileSpan;
import dev.shear.block.ImageFile;
import dev.shear.block.ReadSegment;
import java.io.IOException;
import java.nio.ByteBuffer;
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
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/** Reads of every mapping kind against {@link Qcow2TestImage}'s reference model. */
class Qcow2ImageReadTest {
    static final long SEED = Long.getLong("shear.seed", 20240601L);

    @TempDir
    Path dir;

    static byte[] pattern(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i % 61 < 7 ? r.nextInt(256) : 1 + (i >>> 9));
        }
        return b;
    }

    static Qcow2Image open(Path p) throws IOException {
        return Qcow2Image.open(ImageFile.open(p, false), Qcow2OpenOptions.defaults());
    }

    static byte[] readAll(BlockDevice d, long offset, int length) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(length);
        d.read(offset, b);
        assertFalse(b.hasRemaining());
        return b.array();
    }

    static void assertReadsLikeModel(BlockDevice d, Qcow2TestImage.Content model, long size) throws IOException {
        // Whole disk at once, then odd-sized pieces straddling cluster boundaries.
        assertArrayEquals(model.read(0, (int) size), readAll(d, 0, (int) size), "whole disk");
        SplittableRandom r = new SplittableRandom(SEED);
        for (int i = 0; i < 40; i++) {
            long off = r.nextLong(size);
            int len = (int) Math.min(size - off, 1 + r.nextInt(200_000));
            assertArrayEquals(model.read(off, len), readAll(d, off, len), "seed " + SEED + " read " + off + "+" + len);
        }
    }

    /** Every kind of cluster a standard image can hold, ending in a partial cluster. */
    static Qcow2TestImage everyKind(int clusterBits, int refcountOrder, String compression) {
        int cs = 1 << clusterBits;
        long size = 40L * cs + 1536;   // not a multiple of the cluster size
        Qcow2TestImage t = Qcow2TestImage.create(size).clusterBits(clusterBits).refcountOrder(refcountOrder)
                .compression(compression);
        t.write(100, pattern(3 * cs, 1));                  // normal, partial first/last clusters
        t.write(10L * cs, pattern(cs, 2));
        t.zeroes(10L * cs, cs, true);                      // ZERO_ALLOC (stale host bytes)
        t.zeroes(11L * cs, 2L * cs, false);                // ZERO_PLAIN
        for (int i = 0; i < 4; i++) {
            t.writeCompressed((20L + i) * cs, pattern(cs, 10 + i));   // packed back to back
        }
        t.write(size - 700, pattern(700, 3));              // the partial last cluster
        return t;
    }

    @ParameterizedTest
    @CsvSource({"9,4", "12,0", "12,6", "16,4", "16,3", "21,4"})
    void everyMappingKindShouldReadAsTheModel(int clusterBits, int refcountOrder) throws IOException {
        Qcow2TestImage t = everyKind(clusterBits, refcountOrder, "zlib");
        Path p = dir.resolve("a.qcow2");
        t.writeTo(p);
        try (Qcow2Image img = open(p)) {
            assertEquals(t.size(), img.size());
            assertReadsLikeModel(img, t.content(), t.size());
        }
    }

    @Test
    void version2ImageShouldRead() throws IOException {
        Qcow2TestImage t = Qcow2TestImage.create(1 << 20).version(2).clusterBits(12);
        t.write(5000, pattern(20_000, 4)).writeCompressed(64 * 4096, pattern(4096, 5));
        Path p = dir.resolve("v2.qcow2");
        t.writeTo(p);
        try (Qcow2Image img = open(p)) {
            assertEquals(2, img.header().version());
            assertReadsLikeModel(img, t.content(), t.size());
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"zlib", "zstd"})
    void compressedClustersWhoseSectorsOverlapTheNextShouldDecode(String compression) throws IOException {
        Qcow2TestImage t = everyKind(16, 4, compression);
        Path p = dir.resolve("c.qcow2");
        Qcow2TestImage.Layout layout = t.writeTo(p);
        long first = layout.compressedOffsets().get(20L);
        long second = layout.compressedOffsets().get(21L);
        long last = layout.compressedOffsets().get(23L);
        try (Qcow2Image img = open(p)) {
            ClusterMapping.Compressed m = assertInstanceOf(ClusterMapping.Compressed.class,
                    img.map(20L << 16, 1 << 16));
            assertEquals(first, m.hostOffset());
            assertTrue(first + m.compressedSize() > second, "csize runs into the next compressed cluster");
            ClusterMapping.Compressed m4 = assertInstanceOf(ClusterMapping.Compressed.class,
                    img.map(23L << 16, 1 << 16));
            assertTrue(last + m4.compressedSize() > layout.fileSize(), "csize of the last one runs past EOF");
            assertEquals(compression, img.header().compressionTypeName());
            assertReadsLikeModel(img, t.content(), t.size());
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {14, 16, 21})
    void extendedL2SubclustersShouldReadAsTheModel(int clusterBits) throws IOException {
        int cs = 1 << clusterBits;
        int sub = cs / 32;
        long size = 12L * cs + 512;
        Qcow2TestImage t = Qcow2TestImage.create(size).clusterBits(clusterBits).extendedL2(true)
                .backing("base.raw", "raw");
        t.write(2L * sub + 5, pattern(3 * sub, 1));                 // NORMAL subclusters in an unallocated rest
        t.zeroes(cs + 4L * sub, 8L * sub, false);                   // ZERO_PLAIN subclusters
        t.write(2L * cs, pattern(cs, 2));
        t.zeroes(2L * cs, 3L * sub, false);                         // ZERO_ALLOC subclusters
        t.discard(2L * cs + 10L * sub, 2L * sub);                   // UNALLOCATED_ALLOC subclusters
        t.zeroes(5L * cs, cs, false);                               // whole cluster of zero subclusters
        t.writeCompressed(7L * cs, pattern(cs, 3));
        t.write(size - 100, pattern(100, 4));
        Path p = dir.resolve("x.qcow2");
        t.writeTo(p);
        byte[] base = pattern((int) size, 99);
        java.nio.file.Files.write(dir.resolve("base.raw"), base);
        try (Qcow2Image img = open(p)) {
            assertTrue(img.header().hasExtendedL2());
            assertReadsLikeModel(img, t.content(Qcow2TestImage.Content.of(base)), size);
            assertEquals(new ClusterMapping.Unallocated(2L * sub), img.map(2L * cs + 10L * sub, 4L * sub));
            assertInstanceOf(ClusterMapping.Zero.class, img.map(cs + 4L * sub, sub));
        }
    }

    @Test
    void invalidSubclusterBitmapShouldFailThatReadOnlyNamingOffsets() throws IOException {
        int cs = 1 << 16;
        Qcow2TestImage t = Qcow2TestImage.create(8L * cs).extendedL2(true);
        t.write(0, pattern(cs, 1)).write(4L * cs, pattern(cs, 2));
        Path p = dir.resolve("bad.qcow2");
        Qcow2TestImage.Layout layout = t.writeTo(p);
        long host = layout.hostOffset(0);
        // Cluster 2: allocated and zero bits overlap on subcluster 3 -> INVALID.
        t.rawL2Entry(2L * cs, host | 1L << 63, 0x0000_0008_0000_0008L).writeTo(p);
        layout = t.writeTo(p);
        long l2 = layout.l2Offsets().get(0L);
        try (Qcow2Image img = open(p)) {
            BlockException e = assertThrows(BlockException.class, () -> readAll(img, 2L * cs + 100, 10));
            assertEquals(BlockErrorKind.CORRUPT_IMAGE, e.kind());
            assertEquals(l2 + 2 * 16, e.offset());
            assertTrue(e.getMessage().contains("guest offset 0x20064"), e.getMessage());
            assertTrue(e.getMessage().contains("subcluster bitmap: 0x0000000800000008"), e.getMessage());
            // Ranges around it keep working, including a run that stops right before it.
            assertArrayEquals(t.content().read(0, 2 * cs), readAll(img, 0, 2 * cs));
            assertArrayEquals(t.content().read(4L * cs, cs), readAll(img, 4L * cs, cs));
        }
    }

    @Test
    void l2EntryWithReservedBitsOrUnalignedOffsetShouldFailWithCorrupt() throws IOException {
        int cs = 1 << 12;
        Qcow2TestImage t = Qcow2TestImage.create(64L * cs).clusterBits(12);
        t.write(0, pattern(cs, 1));
        t.rawL2Entry(3L * cs, 0x200 | 1L << 63, 0);           // unaligned host offset
        t.rawL2Entry(5L * cs, 0x10000L | 0x2, 0);             // reserved bit 1
        Path p = dir.resolve("bad.qcow2");
        t.writeTo(p);
        try (Qcow2Image img = open(p)) {
            BlockException a = assertThrows(BlockException.class, () -> readAll(img, 3L * cs, 1));
            assertTrue(a.getMessage().contains("host offset: 0x200 (expected: cluster-aligned)"), a.getMessage());
            BlockException b = assertThrows(BlockException.class, () -> readAll(img, 5L * cs, 1));
            assertTrue(b.getMessage().contains("reserved bits: 0x2 (expected: 0)"), b.getMessage());
            assertEquals(BlockErrorKind.CORRUPT_IMAGE, b.kind());
            assertArrayEquals(t.content().read(0, 3 * cs), readAll(img, 0, 3 * cs));
            // Block status meets the same entry and fails the same way.
            assertThrows(BlockException.class, () -> img.blockStatus(0, 64L * cs, e -> true));
        }
    }

    @Test
    void corruptCompressedDataShouldFailWithCorrupt() throws IOException {
        int cs = 1 << 16;
        Qcow2TestImage t = Qcow2TestImage.create(4L * cs);
        t.write(0, pattern(cs, 1));
        // A compressed entry pointing at the plain data cluster: not a deflate stream.
        Path p = dir.resolve("bad.qcow2");
        long host = t.writeTo(p).hostOffset(0);
        t.rawL2Entry(2L * cs, L2Entry.compressed(host, 1000, 16), 0).writeTo(p);
        try (Qcow2Image img = open(p)) {
            BlockException e = assertThrows(BlockException.class, () -> readAll(img, 2L * cs, 10));
            assertEquals(BlockErrorKind.CORRUPT_IMAGE, e.kind());
            assertTrue(e.getMessage().startsWith("compressed cluster (guest offset 0x20000"), e.getMessage());
        }
    }

    @Test
    void readSegmentsShouldMergeHostRunsAndDescribeTheRestExactly() throws IOException {
        int cs = 1 << 16;
        Qcow2TestImage t = Qcow2TestImage.create(16L * cs);
        t.write(0, pattern(3 * cs, 1));            // three host-contiguous clusters
        t.zeroes(3L * cs, cs, false);
        t.writeCompressed(5L * cs, pattern(cs, 2));
        Path p = dir.resolve("s.qcow2");
        Qcow2TestImage.Layout layout = t.writeTo(p);
        try (Qcow2Image img = open(p)) {
            List<ReadSegment> segs = new ArrayList<>();
            img.readSegments(100, 8L * cs - 100, segs::add);
            assertEquals(4, segs.size(), segs.toString());
            FileSpan span = assertInstanceOf(FileSpan.class, segs.get(0));
            assertEquals(layout.hostOffset(0) + 100, span.position());
            assertEquals(3L * cs - 100, span.length());
            assertEquals(new ReadSegment.Zeros(2L * cs), segs.get(1));     // zero + unallocated, merged
            assertEquals(new ReadSegment.Copy(5L * cs, cs), segs.get(2));
            assertEquals(new ReadSegment.Zeros(2L * cs), segs.get(3));
        }
    }

    @Test
    void concurrentReadersShouldSeeTheModel() throws Exception {
        // 512-byte clusters: an L2 table reaches 32 KiB, so 1 MiB spans 32 tables.
        Qcow2TestImage t = Qcow2TestImage.create(1 << 20).clusterBits(9).compression("zstd");
        SplittableRandom setup = new SplittableRandom(SEED);
        for (int i = 0; i < 200; i++) {
            long off = setup.nextLong(1 << 20) & ~511L;
            switch (i % 4) {
                case 0 -> t.writeCompressed(off, pattern(512, i));
                case 1 -> t.zeroes(off, 512, false);
                default -> t.write(off, pattern((int) Math.min(3000, (1 << 20) - off), i));
            }
        }
        Path p = dir.resolve("mt.qcow2");
        t.writeTo(p);
        Qcow2TestImage.Content model = t.content();
        // A cache of 2 tables forces loads and evictions under contention.
        try (Qcow2Image img = Qcow2Image.open(ImageFile.open(p, false),
                Qcow2OpenOptions.defaults().withCacheBytes(2 * 512))) {
            ExecutorService pool = Executors.newFixedThreadPool(4);
            try {
                List<Future<?>> fs = new ArrayList<>();
                for (int th = 0; th < 4; th++) {
                    long seed = SEED + th;
                    fs.add(pool.submit(() -> {
                        SplittableRandom r = new SplittableRandom(seed);
                        for (int i = 0; i < 300; i++) {
                            long off = r.nextLong(t.size());
                            int len = (int) Math.min(t.size() - off, 1 + r.nextInt(20_000));
                            assertArrayEquals(model.read(off, len), readAll(img, off, len),
                                    "seed " + seed + " read " + off + "+" + len);
                        }
                        return null;
                    }));
                }
                for (Future<?> f : fs) {
                    f.get(60, TimeUnit.SECONDS);
                }
            } finally {
                pool.shutdownNow();
            }
            assertTrue(img.cacheStats().evictions() > 0, img.cacheStats().toString());
        }
    }

    @Test
    void readPastTheEndShouldBeOutOfRange() throws IOException {
        Path p = dir.resolve("r.qcow2");
        Qcow2TestImage.create(1 << 20).writeTo(p);
        try (Qcow2Image img = open(p)) {
            BlockException e = assertThrows(BlockException.class, () -> readAll(img, (1 << 20) - 10, 11));
            assertEquals(BlockErrorKind.OUT_OF_RANGE, e.kind());
        }
    }
}
