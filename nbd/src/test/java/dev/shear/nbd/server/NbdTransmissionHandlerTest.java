package dev.shear.nbd.server;

import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_BLOCK_STATUS;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_READ;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_WRITE;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REPLY_TYPE_BLOCK_STATUS;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REPLY_TYPE_BLOCK_STATUS_EXT;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REPLY_TYPE_NONE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockCapabilities;
import dev.shear.block.BlockDevice;
import dev.shear.block.ExtentSink;
import dev.shear.block.RawImage;
import dev.shear.block.ReadSegmentSink;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Requests in flight on the real server (event loop + I/O pool, the threads on which requests and
 * replies are pooled): replies may complete out of order, and no request or reply may be recycled
 * while it is still in flight (protocol/NbdPooledMessage.java: "after its last release an instance
 * belongs to the pool; nobody may read it any more").
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class NbdTransmissionHandlerTest {
    static final int SIZE = 1 << 20;
    static final long SEED = Long.getLong("shear.seed", 7);

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

    /**
     * READ A blocks in the device until B (WRITE), C (READ of B's data) and D (BLOCK_STATUS) have been
     * decoded on the same event loop, run, and answered: had A's request been released at hand-off,
     * B's decode would have taken its instance and A would answer with B's cookie or offset.
     */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"simple", "structured", "extended"})
    void outOfOrderCompletionShouldNotReuseInFlightRequests(String mode) throws Exception {
        ServerLog.setSink(null);
        byte[] content = new byte[SIZE];
        new SplittableRandom(SEED).nextBytes(content);
        Path image = dir.resolve("disk.raw");
        Files.write(image, content);
        GatedDevice device = new GatedDevice(RawImage.open(image, true), 0);
        Export export = new Export("disk", "gated", device, false, true, DirtyBitmapSource.NONE, true);
        Path socket = dir.resolve("nbd.sock");
        server = new NbdServer(NbdServerConfig.unix(socket), new ExportRegistry(List.of(export))).start();

        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            switch (mode) {
                case "simple" -> c.negotiate("disk", false);
                case "structured" -> c.negotiate("disk", true, "base:allocation");
                default -> c.negotiateExtended("disk", "base:allocation");
            }
            c.request(0, NBD_CMD_READ, 0xA, 0, 4096, null);
            assertTrue(device.entered.await(10, TimeUnit.SECONDS), "READ A never reached the device");

            byte[] payload = new byte[4096];
            new SplittableRandom(SEED + 1).nextBytes(payload);
            c.request(0, NBD_CMD_WRITE, 0xB, 65536, payload.length, payload);
            assertSuccess(c, mode, 0xB);
            c.request(0, NBD_CMD_READ, 0xC, 65536, 4096, null);
            assertArrayEquals(payload, readData(c, mode, 0xC, 65536, 4096), "READ C after WRITE B");
            if (!mode.equals("simple")) {
                c.request(0, NBD_CMD_BLOCK_STATUS, 0xD, 0, 8192, null);
                NbdTestClient.Chunk status = c.readChunk();
                assertEquals(0xD, status.cookie());
                assertEquals(mode.equals("extended") ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT : NBD_REPLY_TYPE_BLOCK_STATUS,
                        status.type());
                assertTrue(status.done());
            }

            device.gate.countDown();
            assertArrayEquals(Arrays.copyOfRange(content, 0, 4096), readData(c, mode, 0xA, 0, 4096),
                    "READ A answered last, with its own cookie and data");
            c.disconnect();
            assertTrue(c.closedByServer());
        }
    }

    /**
     * Background exports (backup snapshots) are served on the backup loops, apart from the guest: a
     * backup read that blocks in its device holds up no guest request, and guest requests never run there.
     */
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
        int loops = NbdServerConfig.backupLoops();
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
                .allMatch(n -> n.startsWith("nbd-backup-")), "snapshot reads ran on " + snapThreads.names);
        assertTrue(!guest.names.isEmpty() && guest.names.stream()
                .noneMatch(n -> n.startsWith("nbd-backup-")), "guest requests ran on " + guest.names);
    }

    /** Records the name of every thread that reads or writes through it. */
    static final class ThreadRecorder extends Forwarding {
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

    private static void assertSuccess(NbdTestClient c, String mode, long cookie) throws IOException {
        if (mode.equals("extended")) {
            NbdTestClient.Chunk done = c.readChunk();
            assertEquals(cookie, done.cookie());
            assertEquals(NBD_REPLY_TYPE_NONE, done.type());
            assertTrue(done.done());
        } else {
            NbdTestClient.Simple s = c.readSimple(0);
            assertEquals(cookie, s.cookie());
            assertEquals(0, s.error());
        }
    }

    private static byte[] readData(NbdTestClient c, String mode, long cookie, long offset, int length)
            throws IOException {
        if (mode.equals("simple")) {
            NbdTestClient.Simple s = c.readSimple(length);
            assertEquals(cookie, s.cookie());
            assertEquals(0, s.error());
            return s.data();
        }
        return c.readData(cookie, offset, length);   // checks the cookie of every chunk
    }

    /** A device whose reads at {@code gatedOffset} wait (bounded) until the gate opens. */
    static final class GatedDevice extends Forwarding {
        final CountDownLatch entered = new CountDownLatch(1);
        final CountDownLatch gate = new CountDownLatch(1);
        private final long gatedOffset;

        GatedDevice(BlockDevice device, long gatedOffset) {
            super(device);
            this.gatedOffset = gatedOffset;
        }

        private void passGate(long offset) throws IOException {
            if (offset != gatedOffset) {
                return;
            }
            entered.countDown();
            try {
                if (!gate.await(20, TimeUnit.SECONDS)) {
                    throw new IOException("gate at offset " + offset + " never opened");
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted at the gate", e);
            }
        }

        @Override
        public String name() {
            return "gated:" + super.name();
        }

        @Override
        public void read(long offset, ByteBuffer dst) throws IOException {
            passGate(offset);
            super.read(offset, dst);
        }

        @Override
        public void readSegments(long offset, long length, ReadSegmentSink sink) throws IOException {
            passGate(offset);
            super.readSegments(offset, length, sink);
        }
    }

    /** Passes every call to the device it wraps: the base of test devices that watch some calls. */
    static class Forwarding implements BlockDevice {
        private final BlockDevice device;

        Forwarding(BlockDevice device) {
            this.device = device;
        }

        @Override
        public String name() {
            return device.name();
        }

        @Override
        public long size() {
            return device.size();
        }

        @Override
        public BlockCapabilities capabilities() {
            return device.capabilities();
        }

        @Override
        public void read(long offset, ByteBuffer dst) throws IOException {
            device.read(offset, dst);
        }

        @Override
        public void readSegments(long offset, long length, ReadSegmentSink sink) throws IOException {
            device.readSegments(offset, length, sink);
        }

        @Override
        public void blockStatus(long offset, long length, ExtentSink sink) throws IOException {
            device.blockStatus(offset, length, sink);
        }

        @Override
        public void write(long offset, ByteBuffer src, int flags) throws IOException {
            device.write(offset, src, flags);
        }

        @Override
        public void writeZeroes(long offset, long length, int flags) throws IOException {
            device.writeZeroes(offset, length, flags);
        }

        @Override
        public void discard(long offset, long length, int flags) throws IOException {
            device.discard(offset, length, flags);
        }

        @Override
        public void flush() throws IOException {
            device.flush();
        }

        @Override
        public void close() throws IOException {
            device.close();
        }
    }
}
