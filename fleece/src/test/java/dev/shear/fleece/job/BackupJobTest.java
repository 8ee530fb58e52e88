package dev.shear.fleece.job;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.bitmap.DirtyBitmap;
import dev.shear.block.BlockDevice;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFormat;
import dev.shear.block.RawImage;
import dev.shear.block.ZeroReportListener;
import dev.shear.fleece.CbwPolicy;
import dev.shear.qcow2.ClusterMapping;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2Image;
import dev.shear.qcow2.compress.CompressionType;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class BackupJobTest {
    private static final int CLUSTER = 64 * 1024;
    private static final int CLUSTERS = 16;
    private static final long SEED = Long.getLong("shear.seed", 7L);

    @TempDir
    Path dir;
    private ManagedDisk disk;
    private byte[] initial;

    @BeforeEach
    void setUp() throws IOException {
        Path raw = dir.resolve("disk.raw");
        initial = new byte[CLUSTERS * CLUSTER];
        new SplittableRandom(SEED).nextBytes(initial);
        // Clusters 3 and 4 are zeros: block status says so only where the raw file is sparse, which it is not.
        java.util.Arrays.fill(initial, 3 * CLUSTER, 5 * CLUSTER, (byte) 0);
        Files.write(raw, initial);
        disk = ManagedDisk.wrap("vda", RawImage.open(raw, true), List.of(), CLUSTER);
    }

    @AfterEach
    void tearDown() throws IOException {
        disk.close();
    }

    private ScratchSpec scratch(ScratchSpec.Kind kind) throws IOException {
        Path sd = Files.createDirectories(dir.resolve("scratch"));
        return new ScratchSpec(kind, null, sd, Long.MAX_VALUE);
    }

    private long scratchFiles() throws IOException {
        Path sd = dir.resolve("scratch");
        if (!Files.exists(sd)) {
            return 0;
        }
        try (Stream<Path> s = Files.list(sd)) {
            return s.count();
        }
    }

    private static byte[] read(BlockDevice d, long offset, int length) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(length);
        d.read(offset, b);
        return b.array();
    }

    private void write(long cluster, int value) throws IOException {
        byte[] b = new byte[CLUSTER];
        java.util.Arrays.fill(b, (byte) value);
        disk.top().write(cluster * CLUSTER, ByteBuffer.wrap(b), 0);
    }

    @ParameterizedTest
    @EnumSource(value = ScratchSpec.Kind.class, names = {"QCOW2", "SPILL_LZ4"})
    void fullPullShouldReadThePointInTimeAndCountProgress(ScratchSpec.Kind kind) throws IOException {
        PullBackupJob job = PullBackupJob.begin("j1", disk, null, null, scratch(kind), CbwPolicy.BREAK_SNAPSHOT);
        List<JobEvent> events = new ArrayList<>();
        job.addListener(events::add);
        assertEquals(1, scratchFiles());
        write(1, 0x11);
        write(9, 0x99);
        BlockDevice snap = job.exportDevice();
        assertArrayEquals(initial, read(snap, 0, initial.length));
        assertEquals(initial.length, job.progress().doneBytes());
        assertEquals(initial.length, job.progress().totalBytes());
        assertEquals("read-complete", events.get(0).type());
        assertEquals(2, job.snapshotStats().copiedClusters());
        assertThrows(BlockException.class, () -> snap.write(0, ByteBuffer.allocate(512), 0));
        assertThrows(BackupBusyException.class,
                () -> PullBackupJob.begin("j2", disk, null, null, scratch(kind), CbwPolicy.BREAK_SNAPSHOT));
        job.end();
        assertEquals(JobState.ENDED, job.state());
        assertEquals("ended", events.get(events.size() - 1).type());
        assertEquals(0, scratchFiles());
        assertNull(disk.owner());
        // A second backup after the end is allowed.
        PullBackupJob again = PullBackupJob.begin("j3", disk, null, null, scratch(kind), CbwPolicy.BREAK_SNAPSHOT);
        again.end();
    }

    @Test
    void pullProgressShouldCountRangesReportedAsZeroAsDone() throws IOException {
        PullBackupJob job = PullBackupJob.begin("j1", disk, null, null, scratch(ScratchSpec.Kind.SPILL_LZ4),
                CbwPolicy.BREAK_SNAPSHOT);
        List<JobEvent> events = new ArrayList<>();
        job.addListener(events::add);
        BlockDevice snap = job.exportDevice();
        ZeroReportListener zeros = (ZeroReportListener) snap;
        // A client that skips clusters 3 and 4 (zeros) reads the rest...
        read(snap, 0, 3 * CLUSTER);
        read(snap, 5L * CLUSTER, (CLUSTERS - 5) * CLUSTER);
        assertEquals((CLUSTERS - 2L) * CLUSTER, job.progress().doneBytes());
        assertTrue(events.isEmpty(), events::toString);
        // ...having been told by block status that they read as zeros (reported twice: counted once).
        zeros.zeroReported(3L * CLUSTER, CLUSTER);
        zeros.zeroReported(3L * CLUSTER, 2L * CLUSTER);
        assertEquals(initial.length, job.progress().doneBytes());
        assertEquals(1.0, job.progress().fraction());
        assertEquals(List.of("read-complete"), events.stream().map(JobEvent::type).toList());
        job.end();
    }

    @Test
    void incrementalPullProgressShouldIgnoreZeroReportsOutsideTheBitmap() throws IOException {
        disk.checkpoints().create("c1", null);
        write(2, 0x22);
        disk.top().writeZeroes(6L * CLUSTER, CLUSTER, 0);
        PullBackupJob job = PullBackupJob.begin("j1", disk, "c1", null, scratch(ScratchSpec.Kind.SPILL_LZ4),
                CbwPolicy.BREAK_SNAPSHOT);
        ZeroReportListener zeros = (ZeroReportListener) job.exportDevice();
        assertEquals(2L * CLUSTER, job.progress().totalBytes());
        zeros.zeroReported(3L * CLUSTER, 2L * CLUSTER);   // zeros, but not in the backup
        assertEquals(0, job.progress().doneBytes());
        zeros.zeroReported(6L * CLUSTER, CLUSTER);
        read(job.exportDevice(), 2L * CLUSTER, CLUSTER);
        assertEquals(2L * CLUSTER, job.progress().doneBytes());
        job.end();
    }

    @Test
    void incrementalPullShouldExposeTheBitmapFrozenAtTheSnapshotPoint() throws IOException {
        disk.checkpoints().create("c1", null);
        write(2, 0x22);
        write(5, 0x55);
        PullBackupJob job = PullBackupJob.begin("j1", disk, "c1", "c2", scratch(ScratchSpec.Kind.SPILL_LZ4),
                CbwPolicy.BREAK_SNAPSHOT);
        byte[] atPoint = read(disk.top(), 0, initial.length);
        write(5, 0x77);
        write(7, 0x77);
        DirtyBitmap b = job.bitmap();
        assertEquals("backup-vda", b.name());
        assertEquals(2L * CLUSTER, b.dirtyBytes());
        assertTrue(b.isDirty(2L * CLUSTER, CLUSTER) && b.isDirty(5L * CLUSTER, CLUSTER));
        assertEquals(2L * CLUSTER, job.progress().totalBytes());
        assertArrayEquals(java.util.Arrays.copyOfRange(atPoint, 5 * CLUSTER, 6 * CLUSTER),
                read(job.exportDevice(), 5L * CLUSTER, CLUSTER));
        assertThrows(BlockException.class, () -> read(job.exportDevice(), 7L * CLUSTER, CLUSTER));
        // c2 records only what came after the snapshot point.
        DirtyBitmap since2 = disk.checkpoints().changesSince("c2", "x");
        assertEquals(2L * CLUSTER, since2.dirtyBytes());
        assertTrue(since2.isDirty(7L * CLUSTER, 1));
        job.end();
        assertNotNull(disk.checkpoints().find("c2"));
        assertThrows(BlockException.class, () -> PullBackupJob.begin("j2", disk, "nope", null,
                scratch(ScratchSpec.Kind.SPILL_LZ4), CbwPolicy.BREAK_SNAPSHOT));
        assertNull(disk.owner());
    }

    @Test
    void pushFullThenIncrementalShouldEqualTheSnapshots() throws IOException {
        Path full = dir.resolve("full.qcow2");
        PushBackupJob j1 = PushBackupJob.begin("p1", disk, null, "c1", scratch(ScratchSpec.Kind.QCOW2),
                CbwPolicy.BREAK_SNAPSHOT, full, null, null);
        write(0, 0x01);   // after the point: not in the backup
        assertTrue(j1.awaitFinished(30_000));
        assertEquals(JobState.COMPLETED, j1.state(), () -> String.valueOf(j1.error()));
        assertEquals(j1.progress().totalBytes(), j1.progress().doneBytes());
        try (BlockDevice t = Images.open(full, ImageFormat.QCOW2, true, null)) {
            assertArrayEquals(initial, read(t, 0, initial.length));
        }
        byte[] second = read(disk.top(), 0, initial.length);
        write(12, 0x12);
        disk.top().writeZeroes(13L * CLUSTER, CLUSTER, 0);
        byte[] expected = read(disk.top(), 0, initial.length);
        Path inc = dir.resolve("inc.qcow2");
        PushBackupJob j2 = PushBackupJob.begin("p2", disk, "c1", "c2", scratch(ScratchSpec.Kind.SPILL_ZSTD),
                CbwPolicy.BREAK_SNAPSHOT, inc, "full.qcow2", null);
        assertTrue(j2.awaitFinished(30_000));
        assertEquals(JobState.COMPLETED, j2.state(), () -> String.valueOf(j2.error()));
        assertEquals(3L * CLUSTER, j2.progress().totalBytes());
        try (BlockDevice t = Images.open(inc, ImageFormat.QCOW2, true, null)) {
            assertArrayEquals(expected, read(t, 0, initial.length));
        }
        assertFalse(java.util.Arrays.equals(second, expected));
        assertEquals(0, scratchFiles());
    }

    @Test
    void abortOfARunningPushShouldDeleteTheTargetAndReleaseTheDisk() throws IOException {
        disk.close();
        BlockDevice raw = RawImage.open(dir.resolve("disk.raw"), true);
        BlockDevice slow = new BlockDevice() {
            @Override
            public String name() {
                return raw.name();
            }

            @Override
            public long size() {
                return raw.size();
            }

            @Override
            public dev.shear.block.BlockCapabilities capabilities() {
                return raw.capabilities();
            }

            @Override
            public void read(long offset, ByteBuffer dst) throws IOException {
                try {
                    Thread.sleep(50);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                raw.read(offset, dst);
            }

            @Override
            public void blockStatus(long offset, long length, dev.shear.block.ExtentSink sink) throws IOException {
                raw.blockStatus(offset, length, sink);
            }

            @Override
            public void write(long offset, ByteBuffer src, int flags) throws IOException {
                raw.write(offset, src, flags);
            }

            @Override
            public void close() throws IOException {
                raw.close();
            }
        };
        disk = ManagedDisk.wrap("vda", slow, List.of(), CLUSTER);
        Path target = dir.resolve("aborted.qcow2");
        PushBackupJob job = PushBackupJob.begin("p", disk, null, null, scratch(ScratchSpec.Kind.SPILL_LZ4),
                CbwPolicy.BREAK_SNAPSHOT, target, null, null);
        List<JobEvent> events = new ArrayList<>();
        job.addListener(events::add);
        job.end();
        assertEquals(JobState.ABORTED, job.state());
        assertTrue(job.progress().doneBytes() < job.progress().totalBytes());
        assertEquals("aborted", events.get(events.size() - 1).type());
        assertFalse(Files.exists(target));
        assertEquals(0, scratchFiles());
        assertNull(disk.owner());
    }

    @ParameterizedTest
    @EnumSource(CompressionType.class)
    void compressedPushFullThenIncrementalShouldWriteCompressedAndZeroClusters(CompressionType type)
            throws IOException {
        // Compressible clusters 0..2 and 5..15 (constant bytes); 3 and 4 stay zeros (data to block status).
        for (int c = 0; c < CLUSTERS; c++) {
            if (c != 3 && c != 4) {
                write(c, 0x10 + c);
            }
        }
        byte[] first = read(disk.top(), 0, initial.length);
        Path full = dir.resolve("full.qcow2");
        PushBackupJob j1 = PushBackupJob.begin("p1", disk, null, "c1", scratch(ScratchSpec.Kind.SPILL_LZ4),
                CbwPolicy.BREAK_SNAPSHOT, full, null, type);
        write(0, 0x01);   // after the point: not in the backup
        assertTrue(j1.awaitFinished(30_000));
        assertEquals(JobState.COMPLETED, j1.state(), () -> String.valueOf(j1.error()));
        assertEquals(initial.length, j1.progress().doneBytes());
        try (Qcow2Image t = (Qcow2Image) Images.open(full, ImageFormat.QCOW2, true, null)) {
            assertEquals(type.headerValue(), t.header().compressionType());
            assertArrayEquals(first, read(t, 0, initial.length));
            for (int c = 0; c < CLUSTERS; c++) {
                ClusterMapping m = t.map((long) c * CLUSTER, CLUSTER);
                if (c == 3 || c == 4) {
                    assertInstanceOf(ClusterMapping.Zero.class, m, "cluster " + c);
                } else {
                    assertInstanceOf(ClusterMapping.Compressed.class, m, "cluster " + c);
                }
            }
        }
        write(2, 0x22);
        disk.top().writeZeroes(5L * CLUSTER, CLUSTER, 0);
        byte[] second = read(disk.top(), 0, initial.length);
        Path inc = dir.resolve("inc.qcow2");
        PushBackupJob j2 = PushBackupJob.begin("p2", disk, "c1", null, scratch(ScratchSpec.Kind.SPILL_LZ4),
                CbwPolicy.BREAK_SNAPSHOT, inc, "full.qcow2", type);
        write(2, 0x33);   // after the point
        assertTrue(j2.awaitFinished(30_000));
        assertEquals(JobState.COMPLETED, j2.state(), () -> String.valueOf(j2.error()));
        // Dirty: 0 (written after the first point), 2 and 5.
        assertEquals(3L * CLUSTER, j2.progress().totalBytes());
        try (Qcow2Image t = (Qcow2Image) Images.open(inc, ImageFormat.QCOW2, true, null)) {
            assertArrayEquals(second, read(t, 0, initial.length));
            assertInstanceOf(ClusterMapping.Compressed.class, t.map(0, CLUSTER));
            assertInstanceOf(ClusterMapping.Compressed.class, t.map(2L * CLUSTER, CLUSTER));
            // Zeros over data in the backing file: a zero cluster, not compressed zeros.
            assertInstanceOf(ClusterMapping.Zero.class, t.map(5L * CLUSTER, CLUSTER));
            assertInstanceOf(ClusterMapping.Unallocated.class, t.map(6L * CLUSTER, CLUSTER));
        }
        assertEquals(0, scratchFiles());
    }

    @Test
    void qcow2ScratchShouldStoreZeroAndRemoveAndDeleteAtClose() throws IOException {
        Path f = dir.resolve("s.qcow2");
        try (dev.shear.fleece.scratch.Qcow2Scratch s =
                dev.shear.fleece.scratch.Qcow2Scratch.create(f, 10L * CLUSTER, CLUSTER, 2L * CLUSTER)) {
            byte[] data = new byte[CLUSTER];
            new SplittableRandom(SEED).nextBytes(data);
            s.put(3, ByteBuffer.wrap(data));
            s.put(4, ByteBuffer.allocate(CLUSTER));
            assertTrue(s.isZero(4));
            assertFalse(s.isZero(3));
            ByteBuffer got = ByteBuffer.allocate(100);
            s.get(3, 50, got);
            assertArrayEquals(java.util.Arrays.copyOfRange(data, 50, 150), got.array());
            s.put(5, ByteBuffer.wrap(data));
            assertEquals(2L * CLUSTER, s.usedBytes());
            BlockException full = assertThrows(BlockException.class, () -> s.put(6, ByteBuffer.wrap(data)));
            assertEquals(dev.shear.block.BlockErrorKind.NO_SPACE, full.kind());
            s.remove(3);
            assertEquals(2, s.storedClusters());
            assertThrows(BlockException.class, () -> s.get(3, 0, ByteBuffer.allocate(1)));
            assertTrue(Files.exists(f));
        }
        assertFalse(Files.exists(f));
    }
}
