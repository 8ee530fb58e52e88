package dev.shear.nbd.server;

import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_READ;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_WRITE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockDevice;
import dev.shear.block.RawImage;
import dev.shear.block.ReadSegmentSink;
import dev.shear.nbd.server.NbdTransmissionHandlerTest.GatedDevice;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Background exports (backup snapshots) are served on the backup loops, apart from the guest: a backup
 * read that blocks in its device holds up no guest request, and guest requests never run there.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class BackupLoopTest {
    static final int SIZE = 1 << 20;

    @TempDir
    Path dir;
    NbdServer server;

    @AfterEach
    void tearDown() throws IOException {
        if (server != null) {
            server.shutdown();
        }
        ServerLog.setSink(System.err);
    }

    @Test
    void aGuestShouldBeServedWhileEveryBackupLoopIsBlockedInASnapshotRead() throws Exception {
        ServerLog.setSink(null);
        byte[] content = new byte[SIZE];
        new SplittableRandom(11).nextBytes(content);
        Files.write(dir.resolve("snap.raw"), content);
        Files.write(dir.resolve("guest.raw"), new byte[SIZE]);
        ThreadRecorder snapThreads = new ThreadRecorder(RawImage.open(dir.resolve("snap.raw"), false));
        GatedDevice snap = new GatedDevice(snapThreads, 0);
        ThreadRecorder guest = new ThreadRecorder(RawImage.open(dir.resolve("guest.raw"), true));
        Path socket = dir.resolve("nbd.sock");
        server = new NbdServer(NbdServerConfig.unix(socket).withMaxConnections(8), new ExportRegistry(List.of(
                new Export("guest", null, guest, false, false, DirtyBitmapSource.NONE, true),
                new Export("guest-backup", null, snap, true, false, DirtyBitmapSource.NONE, true, true)))).start();

        // One backup client per backup loop (the group hands them out in turn), each blocked in a read.
        int loops = BackupLoop.threads(Runtime.getRuntime().availableProcessors());
        List<NbdTestClient> backups = new ArrayList<>();
        try (NbdTestClient g = NbdTestClient.connect(socket)) {
            for (int i = 0; i < loops; i++) {
                NbdTestClient b = NbdTestClient.connect(socket);
                backups.add(b);
                b.negotiate("guest-backup", true);
                b.request(0, NBD_CMD_READ, 100 + i, 0, 4096, null);
            }
            assertTrue(snap.entered.await(10, TimeUnit.SECONDS), "no backup read reached the snapshot device");

            g.negotiate("guest", false);
            byte[] payload = new byte[8192];
            new SplittableRandom(12).nextBytes(payload);
            g.request(0, NBD_CMD_WRITE, 1, 65536, payload.length, payload);
            NbdTestClient.Simple w = g.readSimple(0);
            assertEquals(1, w.cookie());
            assertEquals(0, w.error());
            g.request(0, NBD_CMD_READ, 2, 65536, payload.length, null);
            NbdTestClient.Simple r = g.readSimple(payload.length);
            assertEquals(0, r.error());
            assertArrayEquals(payload, r.data(), "the guest was served while the backup reads were blocked");
            assertEquals(1, snap.gate.getCount(), "the backup reads are still blocked");

            snap.gate.countDown();
            for (int i = 0; i < loops; i++) {
                assertArrayEquals(Arrays.copyOfRange(content, 0, 4096), backups.get(i).readData(100 + i, 0, 4096),
                        "backup read " + i + " answered once its device let it go");
            }
            g.disconnect();
            assertTrue(g.closedByServer());
        } finally {
            for (NbdTestClient b : backups) {
                b.close();
            }
        }
        assertTrue(!snapThreads.names.isEmpty() && snapThreads.names.stream()
                .allMatch(n -> n.startsWith(BackupLoop.THREAD_NAME)), "snapshot reads ran on " + snapThreads.names);
        assertTrue(!guest.names.isEmpty() && guest.names.stream()
                .noneMatch(n -> n.startsWith(BackupLoop.THREAD_NAME)), "guest requests ran on " + guest.names);
    }

    /** Records the name of every thread that reads or writes through it. */
    static final class ThreadRecorder extends NbdTransmissionHandlerTest.Forwarding {
        final List<String> names = Collections.synchronizedList(new ArrayList<>());

        ThreadRecorder(BlockDevice device) {
            super(device);
        }

        @Override
        public void read(long offset, ByteBuffer dst) throws IOException {
            names.add(Thread.currentThread().getName());
            super.read(offset, dst);
        }

        @Override
        public void readSegments(long offset, long length, ReadSegmentSink sink) throws IOException {
            names.add(Thread.currentThread().getName());
            super.readSegments(offset, length, sink);
        }

        @Override
        public void write(long offset, ByteBuffer src, int flags) throws IOException {
            names.add(Thread.currentThread().getName());
            super.write(offset, src, flags);
        }
    }
}
