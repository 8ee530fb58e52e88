package dev.shear.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.bitmap.DirtyBitmap;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** One sanity check per {@link BitmapBenchmark} method: it runs and returns the right answer. */
class BitmapBenchmarkTest {
    private static BitmapBenchmark bench;

    @BeforeAll
    static void setUp() {
        bench = new BitmapBenchmark();
        bench.setUp();
    }

    private static BitmapBenchmark.Cursor cursor() {
        BitmapBenchmark.Cursor c = new BitmapBenchmark.Cursor();
        c.setUp();
        return c;
    }

    @Test
    void markShouldDirtyTheWrittenGranule() {
        BitmapBenchmark.Cursor c = cursor();
        long offset = bench.writeOffsets[c.next & (bench.writeOffsets.length - 1)];
        assertTrue(bench.mark(c).isDirty(offset, 4096));
        long next = bench.writeOffsets[c.next & (bench.writeOffsets.length - 1)];
        assertTrue(bench.markContended(c).isDirty(next, 4096));
    }

    @Test
    void onePercentFixtureShouldBeAboutOnePercentDirty() {
        long chunks = BitmapBenchmark.TIB / BitmapBenchmark.GRANULARITY;
        long dirty = bench.onePercent.dirtyBytes() / BitmapBenchmark.GRANULARITY;
        assertTrue(dirty >= chunks / 100 * 0.95 && dirty <= chunks / 100 * 1.05, "dirty chunks " + dirty);
    }

    @Test
    void dirtyExtentsShouldCountEveryDirtyRun() {
        List<Long> runs = new ArrayList<>();
        bench.onePercent.forEachRun(0, BitmapBenchmark.TIB, (o, l, d) -> {
            if (d) {
                runs.add(o);
            }
            return true;
        });
        assertEquals(runs.size(), bench.dirtyExtents());
    }

    @Test
    void mergeShouldCoverEverySource() {
        DirtyBitmap u = bench.merge10();
        DirtyBitmap coarse = bench.merge10Coarser();
        for (DirtyBitmap s : bench.ten) {
            s.forEachDirty(0, s.sizeBytes(), (o, l, d) -> {
                assertTrue(u.isDirty(o, l) && coarse.isDirty(o, l));
                return true;
            });
        }
        assertTrue(coarse.dirtyBytes() >= u.dirtyBytes());
    }

    @Test
    void decodeOfEncodeShouldGiveTheBitmapBack() throws IOException {
        assertEquals(bench.encoded, bench.encode());
        DirtyBitmap back = bench.decode();
        assertEquals(bench.onePercent.dirtyBytes(), back.dirtyBytes());
        bench.onePercent.forEachDirty(0, BitmapBenchmark.TIB, (o, l, d) -> {
            assertTrue(back.isDirty(o, l));
            return true;
        });
    }
}
