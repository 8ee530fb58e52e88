package dev.shear.fleece.job;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.bitmap.BitmapManager;
import dev.shear.bitmap.DirtyBitmap;
import dev.shear.bitmap.checkpoint.CheckpointStore;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFormat;
import dev.shear.fleece.CbwPolicy;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2CreateOptions;
import dev.shear.qcow2.Qcow2Creator;
import dev.shear.qcow2.Qcow2Image;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Backups over {@link PersistentCheckpoints}: the stack a writable qcow2 export gets with the control
 * API (copy-before-write over the image's {@link BitmapManager} tracking device), checkpoints in the
 * image and its sidecar.
 */
class PersistentCheckpointsTest {
    private static final int CLUSTER = 64 * 1024;
    private static final int CLUSTERS = 64;
    private static final long SEED = Long.getLong("shear.seed", 13L);

    @TempDir
    Path dir;
    private Path image;
    private ManagedDisk disk;
    private BitmapManager bitmaps;

    @BeforeEach
    void setUp() throws IOException {
        image = dir.resolve("disk.qcow2");
        Qcow2Creator.create(image, Qcow2CreateOptions.defaults((long) CLUSTERS * CLUSTER));
        open();
    }

    private void open() throws IOException {
        Qcow2Image img = (Qcow2Image) Images.open(image, ImageFormat.QCOW2, false, null);
        bitmaps = BitmapManager.open(img, BitmapManager.Mode.TRACKING);
        disk = ManagedDisk.wrap("vda", bitmaps.device(), List.of(), CLUSTER)
                .withCheckpoints(PersistentCheckpoints.open(bitmaps, 0));
    }

    @AfterEach
    void tearDown() throws IOException {
        if (disk != null) {
            disk.close();
        }
    }

    private ScratchSpec scratch() throws IOException {
        return new ScratchSpec(ScratchSpec.Kind.SPILL_LZ4, null, Files.createDirectories(dir.resolve("scratch")),
                Long.MAX_VALUE);
    }

    private void write(long cluster, int value) throws IOException {
        byte[] b = new byte[CLUSTER];
        java.util.Arrays.fill(b, (byte) value);
        disk.top().write(cluster * CLUSTER, ByteBuffer.wrap(b), 0);
    }

    private static List<Long> dirtyClusters(DirtyBitmap b) {
        List<Long> out = new ArrayList<>();
        for (long c = 0; c < CLUSTERS; c++) {
            if (b.isDirty(c * CLUSTER, CLUSTER)) {
                out.add(c);
            }
        }
        return out;
    }

    @Test
    void backupCheckpointShouldBeCreatedAtTheSnapshotPointAndPersist() throws IOException {
        assertTrue(disk.checkpoints().persistent());
        disk.checkpoints().create("c1", "first");
        write(2, 0x22);
        PullBackupJob job = PullBackupJob.begin("j1", disk, "c1", "c2", scratch(), CbwPolicy.BREAK_SNAPSHOT);
        write(5, 0x55);
        write(2, 0x77);
        assertEquals(List.of(2L), dirtyClusters(job.bitmap()), "frozen at the snapshot point");
        assertEquals(List.of(2L, 5L), dirtyClusters(bitmaps.require("c2")), "c2 starts at the snapshot point");
        byte[] atPoint = new byte[CLUSTER];
        java.util.Arrays.fill(atPoint, (byte) 0x22);
        ByteBuffer snap = ByteBuffer.allocate(CLUSTER);
        job.exportDevice().read(2L * CLUSTER, snap);
        assertArrayEquals(atPoint, snap.array());
        job.end();
        assertEquals("c1", CheckpointStore.read(image).find("c2").parent());
        assertEquals("backup j1", CheckpointStore.read(image).find("c2").description());

        disk.close();
        disk = null;
        open();
        assertEquals(List.of("c1", "c2"), disk.checkpoints().list().stream().map(c -> c.name()).toList());
        assertEquals("first", disk.checkpoints().find("c1").description());
        assertNull(disk.checkpoints().problem("c2"));
        assertEquals(List.of(2L, 5L), dirtyClusters(disk.checkpoints().changesSince("c1", "x")));
        assertEquals(List.of(2L, 5L), dirtyClusters(disk.checkpoints().changesSince("c2", "x")));
    }

    @Test
    void plainBitmapsOfTheImageShouldBeAcceptedAsSinceAndUnknownNamesRefused() throws IOException {
        bitmaps.add("b1", 0, true);
        write(3, 0x33);
        assertEquals(List.of(3L), dirtyClusters(disk.checkpoints().changesSince("b1", "x")));
        assertThrows(BlockException.class, () -> disk.checkpoints().changesSince("nope", "x"));
        assertThrows(BlockException.class, () -> disk.checkpoints().create("b1", null));
        assertFalse(Files.exists(CheckpointStore.sidecar(image)), "nothing written for a refusal");
    }

    /**
     * Guest writes keep coming while backups start, each creating the next checkpoint at its
     * snapshot point: no deadlock between the copy-before-write gate and the manager's quiesce lock,
     * and every write is in the bitmap of the checkpoint current when it completed.
     */
    @Test
    void snapshotPointsUnderConcurrentWritesShouldNeitherBlockNorLoseWrites() throws Exception {
        disk.checkpoints().create("c0", null);
        AtomicBoolean stop = new AtomicBoolean();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        List<long[]> acked = java.util.Collections.synchronizedList(new ArrayList<>());
        Thread writer = new Thread(() -> {
            SplittableRandom r = new SplittableRandom(SEED);
            try {
                while (!stop.get()) {
                    long c = r.nextInt(CLUSTERS);
                    disk.top().write(c * CLUSTER + r.nextInt(CLUSTER / 512) * 512L, ByteBuffer.allocate(512), 0);
                    acked.add(new long[] {c, System.nanoTime()});
                }
            } catch (Throwable t) {
                failure.set(t);
            }
        }, "writer");
        writer.start();
        List<Long> pointReturned = new ArrayList<>();
        for (int i = 1; i <= 5; i++) {
            PullBackupJob job = PullBackupJob.begin("j" + i, disk, "c" + (i - 1), "c" + i, scratch(),
                    CbwPolicy.BREAK_SNAPSHOT);
            pointReturned.add(System.nanoTime());
            job.end();
        }
        stop.set(true);
        writer.join(10_000);
        assertFalse(writer.isAlive());
        assertNull(failure.get());
        assertTrue(acked.size() > 0);
        // A write acknowledged after backup k returned came after its snapshot point: in c_k's bitmap.
        for (long[] w : acked) {
            for (int k = 1; k <= 5; k++) {
                if (w[1] > pointReturned.get(k - 1)) {
                    assertTrue(bitmaps.require("c" + k).isDirty(w[0] * CLUSTER, CLUSTER),
                            "cluster " + w[0] + " written after backup " + k + " missing from c" + k);
                }
            }
        }
        assertEquals(6, CheckpointStore.read(image).list().size());
    }
}
