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
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.Extent;
import dev.shear.block.ReadSegment;
import dev.shear.block.WriteFlags;
import dev.shear.fleece.scratch.FaultyScratch;
import dev.shear.fleece.scratch.MemoryScratch;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class SnapshotViewTest {

    @Test
    void discardShouldBeAlignedInwardToWholeClusters() throws Exception {
        MemoryDevice live = filledDevice(4, 11);
        byte[] before = live.contents();
        FaultyScratch scratch = new FaultyScratch(new MemoryScratch(Long.MAX_VALUE));
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        try (SnapshotView view = cbw.startSnapshot(SnapshotOptions.full(), scratch, null)) {
            cbw.write(0, pattern(4 * CLUSTER, 1), 0);                  // all four copied
            long used = scratch.usedBytes();
            view.discard(CLUSTER / 2, 2L * CLUSTER, 0);                 // [32 KiB, 160 KiB): only cluster 1 whole
            assertEquals(used - CLUSTER, scratch.usedBytes(), "cluster 1 freed, 0 and 2 kept");
            assertEquals(1, view.stats().releasedClusters());
            assertArrayEquals(slice(before, 0, CLUSTER), read(view, 0, CLUSTER));
            assertArrayEquals(new byte[CLUSTER], read(view, CLUSTER, CLUSTER), "discarded: reads zeros");
            assertArrayEquals(slice(before, 2L * CLUSTER, 2 * CLUSTER), read(view, 2L * CLUSTER, 2 * CLUSTER));
        }
    }

    @Test
    void discardShouldStopFutureCopies() throws Exception {
        MemoryDevice live = filledDevice(4, 12);
        FaultyScratch scratch = new FaultyScratch(new MemoryScratch(Long.MAX_VALUE));
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        try (SnapshotView view = cbw.startSnapshot(SnapshotOptions.full(), scratch, null)) {
            view.discard(CLUSTER - 1, 2L * CLUSTER + 2, 0);              // clusters 1 and 2 whole
            cbw.write(0, pattern(4 * CLUSTER, 1), 0);
            assertEquals(1, scratch.putsOf(0));
            assertEquals(0, scratch.putsOf(1));
            assertEquals(0, scratch.putsOf(2));
            assertEquals(1, scratch.putsOf(3));
        }
    }

    @Test
    void discardSmallerThanAClusterShouldDoNothing() throws Exception {
        MemoryDevice live = filledDevice(2, 13);
        byte[] before = live.contents();
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        try (SnapshotView view = cbw.startSnapshot(new MemoryScratch(Long.MAX_VALUE))) {
            view.discard(10, CLUSTER - 20, 0);
            view.discard(CLUSTER - 10240, 20480, 0);                     // straddles clusters 0 and 1
            assertEquals(0, view.stats().releasedClusters());
            cbw.write(0, pattern(2 * CLUSTER, 1), 0);
            assertArrayEquals(before, read(view, 0, 2 * CLUSTER));
        }
    }

    @Test
    void blockStatusAfterLiveWriteZeroesAndDiscardShouldStillReportData() throws Exception {
        MemoryDevice live = filledDevice(4, 14);
        byte[] before = live.contents();
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        try (SnapshotView view = cbw.startSnapshot(new MemoryScratch(Long.MAX_VALUE))) {
            cbw.writeZeroes(CLUSTER, CLUSTER, 0);                         // live: hole
            cbw.discard(2L * CLUSTER, CLUSTER, 0);                        // live: hole
            assertEquals(List.of(Extent.hole(CLUSTER, 2L * CLUSTER)), status(live, CLUSTER, 2L * CLUSTER));
            for (Extent e : status(view, 0, 4L * CLUSTER)) {
                assertTrue(e.isData(), "the snapshot has data everywhere: " + e);
            }
            assertArrayEquals(before, read(view, 0, 4 * CLUSTER));
        }
    }

    @Test
    void blockStatusOfUncopiedClustersShouldFollowTheLiveDevice() throws Exception {
        MemoryDevice live = new MemoryDevice("m", 4 * CLUSTER);
        live.write(0, pattern(CLUSTER, 1), 0);
        live.writeZeroes(2L * CLUSTER, CLUSTER, WriteFlags.NO_HOLE);
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        try (SnapshotView view = cbw.startSnapshot(new MemoryScratch(Long.MAX_VALUE))) {
            assertEquals(List.of(Extent.data(0, CLUSTER, 0, 0), Extent.hole(CLUSTER, CLUSTER),
                    Extent.zero(2L * CLUSTER, CLUSTER, 0), Extent.hole(3L * CLUSTER, CLUSTER)),
                    status(view, 0, 4L * CLUSTER));
            // A copy that happens to be all zeros is reported zero from the scratch's index.
            MemoryDevice raw = new MemoryDevice("raw", 2 * CLUSTER, false);
            CopyBeforeWrite cbw2 = new CopyBeforeWrite(raw);
            try (SnapshotView v2 = cbw2.startSnapshot(new MemoryScratch(Long.MAX_VALUE))) {
                cbw2.write(0, pattern(10, 1), 0);
                assertEquals(List.of(Extent.zero(0, CLUSTER, 0), Extent.data(CLUSTER, CLUSTER, 0, CLUSTER)),
                        status(v2, 0, 2L * CLUSTER));
            }
        }
    }

    @Test
    void blockStatusShouldStopWhenTheSinkSaysSo() throws Exception {
        MemoryDevice live = filledDevice(4, 15);
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        try (SnapshotView view = cbw.startSnapshot(new MemoryScratch(Long.MAX_VALUE))) {
            cbw.write(CLUSTER, pattern(10, 1), 0);
            List<Extent> got = new ArrayList<>();
            view.blockStatus(0, 4L * CLUSTER, e -> {
                got.add(e);
                return false;
            });
            assertEquals(1, got.size());
            assertEquals(0, got.get(0).offset());
        }
    }

    @Test
    void writesToTheViewShouldFailReadOnly() throws Exception {
        CopyBeforeWrite cbw = new CopyBeforeWrite(filledDevice(1, 16));
        try (SnapshotView view = cbw.startSnapshot(new MemoryScratch(Long.MAX_VALUE))) {
            assertFalse(view.capabilities().canWrite());
            assertTrue(view.capabilities().canTrim());
            assertEquals(BlockErrorKind.READ_ONLY,
                    assertThrows(BlockException.class, () -> view.write(0, pattern(1, 1), 0)).kind());
            assertEquals(BlockErrorKind.READ_ONLY,
                    assertThrows(BlockException.class, () -> view.writeZeroes(0, 1, 0)).kind());
            assertEquals(BlockErrorKind.OUT_OF_RANGE,
                    assertThrows(BlockException.class, () -> read(view, CLUSTER - 1, 2)).kind());
        }
    }

    @Test
    void readSegmentsShouldGiveZerosForReleasedAndZeroClusters() throws Exception {
        MemoryDevice live = filledDevice(4, 17);
        live.discard(3L * CLUSTER, CLUSTER, 0);
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        try (SnapshotView view = cbw.startSnapshot(new MemoryScratch(Long.MAX_VALUE))) {
            view.discard(CLUSTER, CLUSTER, 0);
            cbw.write(3L * CLUSTER, pattern(1, 1), 0);                    // was a hole: recorded zero
            List<ReadSegment> segs = new ArrayList<>();
            view.readSegments(10, 4L * CLUSTER - 10, segs::add);
            assertEquals(List.of(new ReadSegment.Copy(10, CLUSTER - 10), new ReadSegment.Zeros(CLUSTER),
                    new ReadSegment.Copy(2L * CLUSTER, CLUSTER), new ReadSegment.Zeros(CLUSTER)), segs);
        }
    }

    @Test
    void readsAcrossManyChunksShouldMixSourcesCorrectly() throws Exception {
        int clusters = 40;   // > READ_CHUNK_BYTES / 64 KiB: several lock chunks
        MemoryDevice live = filledDevice(clusters, 18);
        byte[] before = live.contents();
        CopyBeforeWrite cbw = new CopyBeforeWrite(live);
        try (SnapshotView view = cbw.startSnapshot(new MemoryScratch(Long.MAX_VALUE))) {
            for (int c = 0; c < clusters; c += 3) {
                cbw.write((long) c * CLUSTER + 7, pattern(100, c), 0);
            }
            view.discard(5L * CLUSTER, CLUSTER, 0);
            byte[] expected = before.clone();
            java.util.Arrays.fill(expected, 5 * CLUSTER, 6 * CLUSTER, (byte) 0);
            assertArrayEquals(slice(expected, 3, clusters * CLUSTER - 5), read(view, 3, clusters * CLUSTER - 5));
        }
    }
}
