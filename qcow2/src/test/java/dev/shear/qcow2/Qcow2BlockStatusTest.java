package dev.shear.qcow2;

import static dev.shear.qcow2.Qcow2ImageReadTest.pattern;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.Extent;
import dev.shear.block.ExtentCollector;
import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Block status from metadata: kinds, merging, depth through the chain, early stop, cost. */
class Qcow2BlockStatusTest {
    static final int CS = 1 << 16;

    @TempDir
    Path dir;

    static List<Extent> status(Qcow2Image img, long offset, long length) throws IOException {
        ExtentCollector c = new ExtentCollector(offset, offset + length, Integer.MAX_VALUE);
        img.blockStatus(offset, length, c);
        return c.extents();
    }

    static Qcow2Image open(Path p) throws IOException {
        return Qcow2Image.open(ImageFile.open(p, false), Qcow2OpenOptions.defaults());
    }

    @Test
    void everyKindShouldBeReportedWithMergedRunsAndHostOffsets() throws IOException {
        Qcow2TestImage t = Qcow2TestImage.create(16L * CS);
        t.write(0, pattern(3 * CS, 1));                // clusters 0-2, host-contiguous
        t.write(4L * CS, pattern(CS, 2));
        t.zeroes(4L * CS, CS, true);                   // ZERO_ALLOC
        t.zeroes(5L * CS, 2L * CS, false);             // ZERO_PLAIN
        t.writeCompressed(8L * CS, pattern(CS, 3));
        Path p = dir.resolve("a.qcow2");
        Qcow2TestImage.Layout layout = t.writeTo(p);
        try (Qcow2Image img = open(p)) {
            List<Extent> e = status(img, 0, 16L * CS);
            long host0 = layout.hostOffset(0);
            assertEquals(List.of(
                    Extent.data(0, 3L * CS, 0, host0),
                    Extent.hole(3L * CS, CS),
                    new Extent(4L * CS, CS, Extent.ZERO, 0, e.get(2).hostOffset()),
                    Extent.zero(5L * CS, 2L * CS, 0),
                    Extent.hole(7L * CS, CS),
                    new Extent(8L * CS, CS, Extent.COMPRESSED, 0, -1),
                    Extent.hole(9L * CS, 7L * CS)), e);
            assertTrue(e.get(2).hostOffset() > 0, "ZERO_ALLOC keeps its host offset");
            // A range starting mid-cluster: the first extent starts there, offsets follow.
            assertEquals(List.of(Extent.data(100, CS, 0, host0 + 100)), status(img, 100, CS));
        }
    }

    @Test
    void backingExtentsShouldComeBackOneLayerDeeper() throws IOException {
        Files.write(dir.resolve("base.raw"), pattern(6 * CS, 1));   // shorter than the overlays
        Qcow2TestImage mid = Qcow2TestImage.create(16L * CS).backing("base.raw", "raw");
        mid.write(2L * CS, pattern(CS, 2)).zeroes(3L * CS, CS, false);
        Qcow2TestImage.Layout midLayout = mid.writeTo(dir.resolve("mid.qcow2"));
        Qcow2TestImage top = Qcow2TestImage.create(16L * CS).backing("mid.qcow2", "qcow2");
        top.write(0, pattern(CS, 3));
        Qcow2TestImage.Layout topLayout = top.writeTo(dir.resolve("top.qcow2"));
        try (Qcow2Image img = open(dir.resolve("top.qcow2"))) {
            assertEquals(List.of(
                    Extent.data(0, CS, 0, topLayout.hostOffset(0)),
                    Extent.data(CS, CS, 2, CS),                         // raw base, guest = host offset
                    Extent.data(2L * CS, CS, 1, midLayout.hostOffset(2)),
                    Extent.zero(3L * CS, CS, 1),
                    Extent.data(4L * CS, 2L * CS, 2, 4L * CS),
                    Extent.hole(6L * CS, 10L * CS)),                    // past the base's end
                    status(img, 0, 16L * CS));
        }
    }

    @Test
    void sinkReturningFalseShouldStopTheWalk() throws IOException {
        Qcow2TestImage t = Qcow2TestImage.create(64L * CS);
        for (int i = 0; i < 64; i += 2) {
            t.write((long) i * CS, pattern(CS, i));   // alternating data / hole: 64 extents
        }
        Path p = dir.resolve("a.qcow2");
        t.writeTo(p);
        try (Qcow2Image img = open(p)) {
            List<Extent> seen = new ArrayList<>();
            img.blockStatus(0, 64L * CS, e -> {
                seen.add(e);
                return seen.size() < 3;
            });
            assertEquals(3, seen.size());
            assertEquals(2L * CS, seen.get(2).offset());
        }
    }

    @Test
    void sinkStoppingInsideTheBackingFileShouldStopEverything() throws IOException {
        Qcow2TestImage base = Qcow2TestImage.create(64L * CS);
        for (int i = 0; i < 64; i += 2) {
            base.write((long) i * CS, pattern(CS, i));
        }
        base.writeTo(dir.resolve("base.qcow2"));
        Qcow2TestImage.create(64L * CS).backing("base.qcow2", "qcow2").writeTo(dir.resolve("top.qcow2"));
        try (Qcow2Image img = open(dir.resolve("top.qcow2"))) {
            List<Extent> seen = new ArrayList<>();
            img.blockStatus(0, 64L * CS, e -> {
                seen.add(e);
                return seen.size() < 2;
            });
            assertEquals(2, seen.size());
            assertEquals(1, seen.get(0).depth());
            assertEquals(Extent.UNALLOCATED, seen.get(1).depth());
        }
    }

    @Test
    void wholeDiskStatusOfASparseTebibyteImageShouldTouchOnlyTheL1() throws IOException {
        long size = 1L << 40;
        Path p = dir.resolve("big.qcow2");
        Qcow2TestImage.create(size).writeTo(p);
        try (Qcow2Image img = open(p)) {
            List<Extent> e = status(img, 0, size);
            assertEquals(List.of(Extent.hole(0, size)), e);
            // The cost is structural (timing lives in BlockStatusBenchmark): no L2 table is read.
            assertEquals(0, img.cacheStats().loads(), "no L2 table may be loaded for an unallocated range");
        }
    }

    @Test
    void sparseTebibyteImageWithOneClusterShouldLoadOneL2Table() throws IOException {
        long size = 1L << 40;
        Qcow2TestImage t = Qcow2TestImage.create(size);
        t.write(size - CS, pattern(CS, 1));             // one L2 table at the very end
        Path p = dir.resolve("big.qcow2");
        Qcow2TestImage.Layout layout = t.writeTo(p);
        try (Qcow2Image img = open(p)) {
            assertEquals(List.of(Extent.hole(0, size - CS), Extent.data(size - CS, CS, 0, layout.hostOffset(
                    (size - CS) / CS))), status(img, 0, size));
            assertEquals(1, img.cacheStats().loads());
        }
    }

    @Test
    void layerStatusShouldNotConsultTheBackingFile() throws IOException {
        Files.write(dir.resolve("base.raw"), pattern(4 * CS, 1));
        Qcow2TestImage.create(4L * CS).backing("base.raw", "raw").writeTo(dir.resolve("top.qcow2"));
        try (Qcow2Image img = open(dir.resolve("top.qcow2"))) {
            List<Extent> own = new ArrayList<>();
            img.layerStatus(0, 4L * CS, own::add);
            assertEquals(List.of(Extent.hole(0, 4L * CS)), own);
            assertEquals(List.of(Extent.data(0, 4L * CS, 1, 0)), status(img, 0, 4L * CS));
        }
    }

    @Test
    void extendedL2SubclustersShouldBeReportedAtSubclusterGranularity() throws IOException {
        int sub = CS / 32;
        Qcow2TestImage t = Qcow2TestImage.create(4L * CS).extendedL2(true);
        t.write(0, pattern(CS, 1));
        t.zeroes(4L * sub, 2L * sub, false);          // ZERO_ALLOC subclusters 4-5
        t.discard(8L * sub, sub);                     // UNALLOCATED_ALLOC subcluster 8
        t.zeroes(CS + 2L * sub, sub, false);          // ZERO_PLAIN subcluster in an unallocated cluster
        Path p = dir.resolve("x.qcow2");
        Qcow2TestImage.Layout layout = t.writeTo(p);
        long h = layout.hostOffset(0);
        try (Qcow2Image img = open(p)) {
            assertEquals(List.of(
                    Extent.data(0, 4L * sub, 0, h),
                    new Extent(4L * sub, 2L * sub, Extent.ZERO, 0, h + 4L * sub),
                    Extent.data(6L * sub, 2L * sub, 0, h + 6L * sub),
                    Extent.hole(8L * sub, sub),
                    Extent.data(9L * sub, 23L * sub, 0, h + 9L * sub),
                    Extent.hole(CS, 2L * sub),
                    Extent.zero(CS + 2L * sub, sub, 0),
                    Extent.hole(CS + 3L * sub, 3L * CS - 3L * sub)),
                    status(img, 0, 4L * CS));
        }
    }
}
