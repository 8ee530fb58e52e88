package dev.shear.fleece;

import static dev.shear.fleece.Fixtures.CLUSTER;
import static dev.shear.fleece.Fixtures.filledDevice;
import static dev.shear.fleece.Fixtures.pattern;
import static dev.shear.fleece.Fixtures.read;
import static dev.shear.fleece.Fixtures.slice;
import static dev.shear.fleece.Fixtures.status;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.Extent;
import dev.shear.block.WriteFlags;
import dev.shear.fleece.scratch.FaultyScratch;
import dev.shear.fleece.scratch.MemoryScratch;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.roaringbitmap.RoaringBitmap;

class CopyBeforeWriteTest {

    @Test
    void partialWriteShouldCopyTheWholeClusterFirst() throws Exception {
        MemoryDevice live = filledDevice(4, 1);
        byte[] before = live.contents();
        FaultyScratch scratch = new FaultyScratch(new MemoryScratch(Long.MAX_VALUE));
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        try (SnapshotView view = cbw.startSnapshot(SnapshotOptions.full(), scratch, null)) {
            cbw.write(CLUSTER + 100, pattern(10, 7), 0);
            assertEquals(1, scratch.putsOf(1));
            assertEquals(CLUSTER, scratch.usedBytes(), "a whole cluster is copied for a 10-byte write");
            assertArrayEquals(slice(before, 0, 4 * CLUSTER), read(view, 0, 4 * CLUSTER));
            assertEquals(7, read(live, CLUSTER + 100, 1)[0]);
            assertEquals(1, view.stats().copiedClusters());
        }
    }

    @Test
    void writeSpanningClustersShouldCopyEachOnceAndLaterWritesNoMore() throws Exception {
        MemoryDevice live = filledDevice(4, 2);
        byte[] before = live.contents();
        FaultyScratch scratch = new FaultyScratch(new MemoryScratch(Long.MAX_VALUE));
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        try (SnapshotView view = cbw.startSnapshot(SnapshotOptions.full(), scratch, null)) {
            cbw.write(CLUSTER - 5, pattern(CLUSTER + 10, 1), 0);   // clusters 0, 1, 2
            cbw.write(CLUSTER, pattern(100, 2), 0);
            cbw.write(0, pattern(CLUSTER * 3, 3), 0);
            assertEquals(3, scratch.puts());
            for (int c = 0; c < 3; c++) {
                assertEquals(1, scratch.putsOf(c), "cluster " + c);
            }
            assertEquals(0, scratch.putsOf(3));
            assertArrayEquals(before, read(view, 0, 4 * CLUSTER));
        }
    }

    @Test
    void writeZeroesAndDiscardOnLiveShouldCopyFirst() throws Exception {
        MemoryDevice live = filledDevice(4, 3);
        byte[] before = live.contents();
        FaultyScratch scratch = new FaultyScratch(new MemoryScratch(Long.MAX_VALUE));
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        try (SnapshotView view = cbw.startSnapshot(SnapshotOptions.full(), scratch, null)) {
            cbw.writeZeroes(0, CLUSTER, 0);
            cbw.discard(2L * CLUSTER, CLUSTER, 0);
            assertEquals(1, scratch.putsOf(0));
            assertEquals(1, scratch.putsOf(2));
            assertArrayEquals(before, read(view, 0, 4 * CLUSTER));
        }
    }

    @Test
    void firstWriteToHoleClusterShouldRecordZeroInsteadOfCopying() throws Exception {
        MemoryDevice live = new MemoryDevice("holes", 4 * CLUSTER);
        live.write(0, pattern(CLUSTER, 9), 0);                    // cluster 0 data, clusters 1..3 holes
        live.writeZeroes(2L * CLUSTER, CLUSTER, WriteFlags.NO_HOLE);   // cluster 2 allocated zeros
        FaultyScratch scratch = new FaultyScratch(new MemoryScratch(Long.MAX_VALUE));
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        try (SnapshotView view = cbw.startSnapshot(SnapshotOptions.full(), scratch, null)) {
            cbw.write(CLUSTER + 5, pattern(10, 1), 0);
            cbw.write(2L * CLUSTER, pattern(CLUSTER, 2), 0);
            assertEquals(0, scratch.puts(), "zero clusters cost no copy");
            assertEquals(2, view.stats().zeroClusters());
            assertArrayEquals(new byte[2 * CLUSTER], read(view, CLUSTER, 2 * CLUSTER));
            assertEquals(List.of(Extent.hole(CLUSTER, 3L * CLUSTER)), status(view, CLUSTER, 3L * CLUSTER));
        }
    }

    @Test
    void incrementalShouldNeverCopyCleanClusters() throws Exception {
        int clusters = 16;
        MemoryDevice live = filledDevice(clusters, 4);
        byte[] before = live.contents();
        // 4 KiB granularity: granules 17 (cluster 1) and 16 * 5 + 15 (cluster 5) and 160..161 (cluster 10).
        RoaringBitmap dirty = RoaringBitmap.bitmapOf(17, 95, 160, 161);
        FaultyScratch scratch = new FaultyScratch(new MemoryScratch(Long.MAX_VALUE));
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        SnapshotOptions options = SnapshotOptions.incremental(CopySelection.dirty(dirty, 4096));
        try (SnapshotView view = cbw.startSnapshot(options, scratch, null)) {
            assertEquals(3, view.stats().coveredClusters());
            cbw.write(0, pattern(clusters * CLUSTER, 1), 0);
            assertEquals(3, scratch.puts(), "copies: only the dirty clusters");
            for (int c = 0; c < clusters; c++) {
                assertEquals(c == 1 || c == 5 || c == 10 ? 1 : 0, scratch.putsOf(c), "cluster " + c);
            }
            for (int c : new int[] {1, 5, 10}) {
                assertArrayEquals(slice(before, (long) c * CLUSTER, CLUSTER), read(view, (long) c * CLUSTER, CLUSTER));
            }
            BlockException e = assertThrows(BlockException.class, () -> read(view, 0, 10));
            assertEquals(BlockErrorKind.INVALID_ARGUMENT, e.kind());
            assertTrue(e.getMessage().contains("cluster 0 is not part of this incremental snapshot"), e.getMessage());
            // Block status over clean clusters answers "data", not an error (documented choice).
            assertEquals(List.of(Extent.data(0, 16L * CLUSTER, 0, -1)), status(view, 0, 16L * CLUSTER));
        }
    }

    @Test
    void bitSetAndRoaringSelectionsShouldAgree() throws Exception {
        BitSet bits = new BitSet();
        bits.set(3);          // 1 MiB granularity: cluster 48..63
        bits.set(100);        // past the end: ignored
        RoaringBitmap roaring = RoaringBitmap.bitmapOf(3, 100);
        MemoryDevice live = new MemoryDevice("m", 80 * CLUSTER);
        for (CopySelection sel : List.of(CopySelection.dirty(bits, 1 << 20), CopySelection.dirty(roaring, 1 << 20))) {
            CopyBeforeWrite cbw = new CopyBeforeWrite(live);
            try (SnapshotView view = cbw.startSnapshot(SnapshotOptions.incremental(sel), new MemoryScratch(1), null)) {
                assertEquals(16, view.stats().coveredClusters(), sel.toString());
                CopyState st = view.state().copyState;
                for (int c = 0; c < 80; c++) {
                    assertEquals(c >= 48 && c < 64 ? CopyState.NEEDED : CopyState.NOT_COVERED, st.get(c), "c=" + c);
                }
            }
        }
    }

    @Test
    void scratchFullUnderBreakSnapshotShouldLetTheWriteThroughAndBreakTheSnapshot() throws Exception {
        MemoryDevice live = filledDevice(4, 5);
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        SnapshotOptions options = SnapshotOptions.full().withPolicy(CbwPolicy.BREAK_SNAPSHOT);
        try (SnapshotView view = cbw.startSnapshot(options, new MemoryScratch(CLUSTER), null)) {
            cbw.write(0, pattern(10, 1), 0);
            assertFalse(view.isBroken());
            cbw.write(CLUSTER, pattern(10, 2), 0);             // scratch full: the guest still wins
            assertEquals(2, read(live, CLUSTER, 1)[0]);
            assertTrue(view.isBroken());
            BlockException e = assertThrows(BlockException.class, () -> read(view, 0, 10));
            assertEquals(BlockErrorKind.IO, e.kind(), "EIO, not EINVAL");
            assertTrue(e.getMessage().contains("snapshot broken") && e.getMessage().contains("scratch capacity"),
                    e.getMessage());
            assertNotNull(e.getCause());
            assertEquals(BlockErrorKind.IO,
                    assertThrows(BlockException.class, () -> status(view, 0, CLUSTER)).kind());
            cbw.write(2L * CLUSTER, pattern(10, 3), 0);        // later writes: no copy, no error
            assertEquals(1, view.stats().copiedClusters());
            assertEquals(2, view.stats().abandonedClusters());
        }
    }

    @Test
    void scratchFullUnderBreakGuestWriteShouldFailTheWriteWithNoSpaceAndKeepTheSnapshot() throws Exception {
        MemoryDevice live = filledDevice(4, 6);
        byte[] before = live.contents();
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        SnapshotOptions options = SnapshotOptions.full().withPolicy(CbwPolicy.BREAK_GUEST_WRITE);
        try (SnapshotView view = cbw.startSnapshot(options, new MemoryScratch(CLUSTER), null)) {
            cbw.write(0, pattern(10, 1), 0);
            BlockException e = assertThrows(BlockException.class, () -> cbw.write(CLUSTER, pattern(10, 2), 0));
            assertEquals(BlockErrorKind.NO_SPACE, e.kind());
            assertTrue(e.getMessage().contains("copy-before-write: cluster 1"), e.getMessage());
            assertArrayEquals(slice(before, CLUSTER, 10), read(live, CLUSTER, 10), "live untouched");
            assertFalse(view.isBroken());
            assertArrayEquals(before, read(view, 0, 4 * CLUSTER));
            view.discard(0, CLUSTER, 0);                         // the client has read cluster 0: space freed
            cbw.write(CLUSTER, pattern(10, 2), 0);
            assertArrayEquals(slice(before, CLUSTER, 3 * CLUSTER), read(view, CLUSTER, 3 * CLUSTER));
        }
    }

    @Test
    void ioErrorUnderBreakGuestWriteShouldFailWithEio() throws Exception {
        MemoryDevice live = filledDevice(2, 7);
        FaultyScratch scratch = new FaultyScratch(new MemoryScratch(Long.MAX_VALUE))
                .failPuts(n -> n == 0, BlockErrorKind.CORRUPT_IMAGE);
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        SnapshotOptions options = SnapshotOptions.full().withPolicy(CbwPolicy.BREAK_GUEST_WRITE);
        try (SnapshotView view = cbw.startSnapshot(options, scratch, null)) {
            BlockException e = assertThrows(BlockException.class, () -> cbw.write(0, pattern(10, 2), 0));
            assertEquals(BlockErrorKind.IO, e.kind());
            cbw.write(0, pattern(10, 2), 0);                     // the retry copies and succeeds
            assertEquals(1, view.stats().copiedClusters());
        }
    }

    @Test
    void slowCopyUnderBreakSnapshotShouldBreakTheSnapshotAndLetTheGuestProceed() throws Exception {
        MemoryDevice live = filledDevice(4, 8);
        FaultyScratch scratch = new FaultyScratch(new MemoryScratch(Long.MAX_VALUE)).delayPuts(20_000_000);
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        SnapshotOptions options = SnapshotOptions.full().withPolicy(CbwPolicy.BREAK_SNAPSHOT)
                .withLimits(CbwLimits.DEFAULT.withCbwTimeout(Duration.ofMillis(5)));
        try (SnapshotView view = cbw.startSnapshot(options, scratch, null)) {
            cbw.write(0, pattern(3 * CLUSTER, 1), 0);
            assertEquals(1, scratch.puts(), "the first copy runs to its end; the rest are abandoned");
            assertTrue(view.isBroken());
            assertTrue(view.brokenReason().contains("timed out"), view.brokenReason());
            assertEquals(1, read(live, 2L * CLUSTER, 1)[0]);
            assertEquals(BlockErrorKind.IO, assertThrows(BlockException.class, () -> read(view, 0, 1)).kind());
        }
    }

    @Test
    void slowCopyUnderBreakGuestWriteShouldFailTheWriteAndKeepTheCopy() throws Exception {
        MemoryDevice live = filledDevice(4, 9);
        byte[] before = live.contents();
        FaultyScratch scratch = new FaultyScratch(new MemoryScratch(Long.MAX_VALUE)).delayPuts(20_000_000);
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        SnapshotOptions options = SnapshotOptions.full().withPolicy(CbwPolicy.BREAK_GUEST_WRITE)
                .withLimits(CbwLimits.DEFAULT.withCbwTimeout(Duration.ofMillis(5)));
        try (SnapshotView view = cbw.startSnapshot(options, scratch, null)) {
            BlockException e = assertThrows(BlockException.class, () -> cbw.write(0, pattern(10, 1), 0));
            assertEquals(BlockErrorKind.IO, e.kind());
            assertTrue(e.getMessage().contains("timed out"), e.getMessage());
            assertFalse(view.isBroken());
            assertArrayEquals(slice(before, 0, 10), read(live, 0, 10), "live untouched");
            scratch.delayPuts(0);
            cbw.write(0, pattern(10, 1), 0);                     // already copied: goes straight through
            assertEquals(1, scratch.puts());
            assertArrayEquals(before, read(view, 0, 4 * CLUSTER));
        }
    }

    @Test
    void snapshotShouldBeTakenAtTheBarrierAndOnlyOnce() throws Exception {
        MemoryDevice live = filledDevice(2, 10);
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        AtomicInteger calls = new AtomicInteger();
        MemoryScratch scratch = new MemoryScratch(Long.MAX_VALUE);
        SnapshotView view = cbw.startSnapshot(SnapshotOptions.full(), scratch, calls::incrementAndGet);
        assertEquals(1, calls.get());
        MemoryScratch refused = new MemoryScratch(1);
        BlockException e = assertThrows(BlockException.class, () -> cbw.startSnapshot(refused));
        assertEquals(BlockErrorKind.INVALID_ARGUMENT, e.kind());
        assertTrue(refused.isClosed(), "a scratch handed to a refused start is closed");
        view.close();
        assertTrue(scratch.isClosed(), "the view owns its scratch");
        assertEquals(BlockErrorKind.SHUTDOWN, assertThrows(BlockException.class, () -> read(view, 0, 1)).kind());
        cbw.write(0, pattern(10, 5), 0);                          // no snapshot: straight through
        try (SnapshotView again = cbw.startSnapshot(new MemoryScratch(Long.MAX_VALUE))) {
            assertEquals(5, read(again, 0, 1)[0]);
        }
    }

    @Test
    void lastShortClusterShouldBeCopiedWhole() throws Exception {
        MemoryDevice live = new MemoryDevice("short", 2 * CLUSTER + 4096 + 512);
        ByteBuffer data = pattern((int) live.size(), 4);
        live.write(0, data, 0);
        byte[] before = live.contents();
        FaultyScratch scratch = new FaultyScratch(new MemoryScratch(Long.MAX_VALUE));
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        try (SnapshotView view = cbw.startSnapshot(SnapshotOptions.full(), scratch, null)) {
            cbw.write(live.size() - 1, pattern(1, 8), 0);
            assertEquals(4096 + 512, scratch.usedBytes());
            assertArrayEquals(before, read(view, 0, (int) live.size()));
            view.discard(2L * CLUSTER, live.size() - 2L * CLUSTER, 0);   // reaches the end: counts as whole
            assertEquals(0, scratch.usedBytes());
        }
    }

    @Test
    void copyGranularityShouldFollowThePreferredBlockSizeWithA64KibFloor() throws Exception {
        MemoryDevice live = new MemoryDevice("m", CLUSTER);
        assertEquals(64 * 1024, CopyBeforeWrite.copyGranularity(live, CbwLimits.DEFAULT));
        assertEquals(1 << 20, CopyBeforeWrite.copyGranularity(live, CbwLimits.DEFAULT.withMinClusterSize(1 << 20)));
        assertThrows(IllegalArgumentException.class, () -> CbwLimits.DEFAULT.withMinClusterSize(4096));
    }
}
