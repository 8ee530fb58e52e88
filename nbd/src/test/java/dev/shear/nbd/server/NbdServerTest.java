package dev.shear.nbd.server;

import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_BLOCK_STATUS;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_CACHE;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_FLAG_DF;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_FLAG_FAST_ZERO;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_FLAG_FUA;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_FLAG_NO_HOLE;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_FLAG_REQ_ONE;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_FLUSH;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_READ;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_TRIM;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_WRITE;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_WRITE_ZEROES;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_CAN_MULTI_CONN;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_FIXED_NEWSTYLE;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_HAS_FLAGS;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_NO_ZEROES;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_READ_ONLY;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_SEND_DF;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_SEND_FLUSH;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_SEND_FUA;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_SEND_TRIM;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_SEND_WRITE_ZEROES;
import static dev.shear.nbd.protocol.NbdConstants.NBD_INFO_BLOCK_SIZE;
import static dev.shear.nbd.protocol.NbdConstants.NBD_INFO_DESCRIPTION;
import static dev.shear.nbd.protocol.NbdConstants.NBD_INFO_EXPORT;
import static dev.shear.nbd.protocol.NbdConstants.NBD_INFO_NAME;
import static dev.shear.nbd.protocol.NbdConstants.NBD_NEW_VERSION;
import static dev.shear.nbd.protocol.NbdConstants.NBD_OPT_ABORT;
import static dev.shear.nbd.protocol.NbdConstants.NBD_OPT_EXPORT_NAME;
import static dev.shear.nbd.protocol.NbdConstants.NBD_OPT_GO;
import static dev.shear.nbd.protocol.NbdConstants.NBD_OPT_LIST;
import static dev.shear.nbd.protocol.NbdConstants.NBD_OPT_PEEK_EXPORT;
import static dev.shear.nbd.protocol.NbdConstants.NBD_OPT_STRUCTURED_REPLY;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REPLY_TYPE_BLOCK_STATUS;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REPLY_TYPE_BLOCK_STATUS_EXT;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REPLY_TYPE_NONE;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REP_ACK;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REP_ERR_INVALID;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REP_ERR_TLS_REQD;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REP_ERR_UNKNOWN;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REP_ERR_UNSUP;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REP_INFO;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REP_META_CONTEXT;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REP_SERVER;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REQUEST_MAGIC;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.RawImage;
import dev.shear.nbd.protocol.NbdError;
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
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The in-process server on a Unix socket, driven by {@link NbdTestClient}: every malformed case of
 * nbd-protocol.md §8.2, each followed by a check that a new client is still served correctly.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class NbdServerTest {
    static final int SIZE = 1 << 20;
    static final long SEED = Long.getLong("shear.seed", 42);

    @TempDir
    Path dir;
    Path socket;
    Path image;
    byte[] content;
    NbdServer server;

    @BeforeEach
    void setUp() throws IOException {
        ServerLog.setSink(null);
        image = dir.resolve("disk.raw");
        content = new byte[SIZE];
        new SplittableRandom(SEED).nextBytes(content);
        Files.write(image, content);
        socket = dir.resolve("nbd.sock");
        start(NbdServerConfig.unix(socket), false);
    }

    void start(NbdServerConfig config, boolean readOnly) throws IOException {
        RawImage device = RawImage.open(image, !readOnly);
        Export export = new Export("disk", "test disk", device, readOnly, true, DirtyBitmapSource.NONE, true);
        server = new NbdServer(config, new ExportRegistry(List.of(export))).start();
    }

    @AfterEach
    void tearDown() throws IOException {
        if (server != null) {
            server.shutdown();
        }
        ServerLog.setSink(System.err);
    }

    /** After every error case: a fresh client negotiates and reads correctly. */
    void assertServesNewClient() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiate("disk", true, "base:allocation");
            c.request(0, NBD_CMD_READ, 7, 4096, 8192, null);
            byte[] data = c.readData(7, 4096, 8192);
            assertArrayEquals(java.util.Arrays.copyOfRange(content, 4096, 4096 + 8192), data);
            c.disconnect();
            assertTrue(c.closedByServer());
        }
    }

    @Test
    void greetingShouldOfferFixedNewstyleAndNoZeroes() throws IOException {
        try (NbdTestClient c = NbdTestClient.open(socket)) {
            assertEquals(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, c.handshakeFlags);
        }
    }

    @Test
    void goShouldSendBlockSizeBeforeExportThenAck() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.option(NBD_OPT_STRUCTURED_REPLY);
            List<NbdTestClient.OptionReply> r = c.go("disk", NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME, NBD_INFO_DESCRIPTION);
            List<Integer> infoTypes = new ArrayList<>();
            for (NbdTestClient.OptionReply x : r) {
                if (x.type() == NBD_REP_INFO) {
                    infoTypes.add((int) ByteBuffer.wrap(x.data()).getShort());
                }
            }
            assertEquals(List.of(NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE, NBD_INFO_EXPORT), infoTypes);
            assertEquals(NBD_REP_ACK, NbdTestClient.last(r).type());
            assertEquals(SIZE, c.exportSize);
            int f = c.transmissionFlags;
            assertTrue((f & NBD_FLAG_HAS_FLAGS) != 0 && (f & NBD_FLAG_SEND_DF) != 0, Integer.toHexString(f));
            assertTrue((f & NBD_FLAG_SEND_FLUSH) != 0 && (f & NBD_FLAG_SEND_FUA) != 0);
            assertTrue((f & NBD_FLAG_SEND_WRITE_ZEROES) != 0 && (f & NBD_FLAG_CAN_MULTI_CONN) != 0);
            assertFalse((f & NBD_FLAG_READ_ONLY) != 0 || (f & NBD_FLAG_SEND_TRIM) != 0);
            c.disconnect();
        }
    }

    @Test
    void listShouldNameEveryExportThenAck() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.sendOption(NBD_OPT_LIST, new byte[0]);
            List<NbdTestClient.OptionReply> r = c.readUntilFinal();
            assertEquals(2, r.size());
            assertEquals(NBD_REP_SERVER, r.get(0).type());
            ByteBuffer b = ByteBuffer.wrap(r.get(0).data());
            assertEquals(4, b.getInt());
            assertEquals(NBD_REP_ACK, r.get(1).type());
            assertEquals(NBD_REP_ACK, c.option(NBD_OPT_ABORT).type());
            assertTrue(c.closedByServer());
        }
    }

    @Test
    void listMetaContextShouldOfferContextsAndQemuQueries() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.option(NBD_OPT_STRUCTURED_REPLY);
            List<NbdTestClient.OptionReply> all = c.meta(false, "disk");
            assertEquals(List.of("base:allocation", "qemu:allocation-depth"), names(all));
            assertEquals(List.of("qemu:allocation-depth"), names(c.meta(false, "disk", "qemu:")));
            assertEquals(List.of(), names(c.meta(false, "disk", "qemu:dirty-bitmap:")));
            assertEquals(List.of(), names(c.meta(true, "disk", "base:")));
            assertEquals(NBD_REP_ERR_UNKNOWN, NbdTestClient.last(c.meta(true, "nope", "base:allocation")).type());
        }
    }

    static List<String> names(List<NbdTestClient.OptionReply> replies) {
        List<String> n = new ArrayList<>();
        for (NbdTestClient.OptionReply r : replies) {
            if (r.type() == NBD_REP_META_CONTEXT) {
                n.add(new String(r.data(), 4, r.data().length - 4, java.nio.charset.StandardCharsets.UTF_8));
            }
        }
        return n;
    }

    @Test
    void badOptionMagicShouldCloseConnection() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.sendBytes(new byte[16]);
            assertTrue(c.closedByServer());
        }
        assertServesNewClient();
    }

    @Test
    void unknownClientFlagsShouldCloseConnection() throws IOException {
        try (NbdTestClient c = NbdTestClient.open(socket)) {
            c.send(ByteBuffer.allocate(4).putInt(0x80000001).flip());
            assertTrue(c.closedByServer());
        }
        assertServesNewClient();
    }

    @Test
    void unknownOptionShouldGetErrUnsupAndKeepNegotiating() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.sendOption(99, new byte[100]);
            NbdTestClient.OptionReply r = c.readOptionReply();
            assertEquals(NBD_REP_ERR_UNSUP, r.type());
            assertEquals(99, r.option());
            assertEquals(NBD_REP_ERR_UNSUP, c.option(NBD_OPT_PEEK_EXPORT).type());
            c.negotiate("disk", true);
            c.disconnect();
        }
        assertServesNewClient();
    }

    @Test
    void optionLongerThanLimitShouldCloseConnection() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            ByteBuffer b = ByteBuffer.allocate(16).putLong(NBD_NEW_VERSION).putInt(NBD_OPT_GO)
                    .putInt(NbdServerConfig.DEFAULT_MAX_OPTION_LENGTH + 1).flip();
            c.send(b);
            assertTrue(c.closedByServer());
        }
        assertServesNewClient();
    }

    @Test
    void malformedInfoShouldGetErrInvalid() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.sendOption(NBD_OPT_GO, new byte[] {0, 0, 0, 50, 'd', 0, 0});
            assertEquals(NBD_REP_ERR_INVALID, c.readOptionReply().type());
            c.sendOption(NBD_OPT_STRUCTURED_REPLY, new byte[1]);
            assertEquals(NBD_REP_ERR_INVALID, c.readOptionReply().type());
            c.negotiate("disk", true);
        }
        assertServesNewClient();
    }

    @Test
    void goForMissingExportShouldGetErrUnknownAndAllowRetry() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            List<NbdTestClient.OptionReply> r = c.go("missing", NBD_INFO_BLOCK_SIZE);
            assertEquals(1, r.size());
            assertEquals(NBD_REP_ERR_UNKNOWN, r.get(0).type());
            assertTrue(r.get(0).text().contains("missing"), r.get(0).text());
            c.negotiate("disk", false);
            c.request(0, NBD_CMD_READ, 1, 0, 512, null);
            NbdTestClient.Simple s = c.readSimple(512);
            assertEquals(0, s.error());
            assertArrayEquals(java.util.Arrays.copyOf(content, 512), s.data());
        }
    }

    @Test
    void exportNameForMissingExportShouldCloseAndKnownShouldServe() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.sendOption(NBD_OPT_EXPORT_NAME, "nope".getBytes());
            assertTrue(c.closedByServer());
        }
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.sendOption(NBD_OPT_EXPORT_NAME, "disk".getBytes());
            ByteBuffer r = c.read(10);   // NO_ZEROES negotiated: no padding
            assertEquals(SIZE, r.getLong());
            c.request(0, NBD_CMD_READ, 2, 100, 10, null);
            assertArrayEquals(java.util.Arrays.copyOfRange(content, 100, 110), c.readSimple(10).data());
        }
    }

    @Test
    void badRequestMagicShouldCloseConnection() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiate("disk", true);
            c.sendBytes(new byte[28]);
            assertTrue(c.closedByServer());
        }
        assertServesNewClient();
    }

    @Test
    void readPastEndShouldFailWithEinvalAndKeepConnection() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiate("disk", true);
            c.request(0, NBD_CMD_READ, 3, SIZE - 10, 20, null);
            assertEquals(NbdError.EINVAL.wireValue(), c.readErrorChunk(3));
            c.request(0, NBD_CMD_READ, 4, -1L, 1, null);
            assertEquals(NbdError.EINVAL.wireValue(), c.readErrorChunk(4));
            c.request(0, NBD_CMD_WRITE, 5, SIZE, 4, new byte[4]);
            assertEquals(NbdError.ENOSPC.wireValue(), c.readSimple(0).error());
            c.request(0, NBD_CMD_READ, 6, 0, 16, null);
            assertArrayEquals(java.util.Arrays.copyOf(content, 16), c.readData(6, 0, 16));
        }
        assertServesNewClient();
    }

    @Test
    void zeroLengthRequestsShouldSucceedExceptBlockStatus() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiate("disk", true, "base:allocation");
            c.request(0, NBD_CMD_READ, 1, 0, 0, null);
            NbdTestClient.Chunk done = c.readChunk();
            assertEquals(NBD_REPLY_TYPE_NONE, done.type());
            assertTrue(done.done());
            c.request(0, NBD_CMD_WRITE, 2, 0, 0, new byte[0]);
            assertEquals(0, c.readSimple(0).error());
            c.request(0, NBD_CMD_WRITE_ZEROES, 3, 0, 0, null);
            assertEquals(0, c.readSimple(0).error());
            c.request(0, NBD_CMD_CACHE, 4, 0, 0, null);
            assertEquals(0, c.readSimple(0).error());
            c.request(0, NBD_CMD_BLOCK_STATUS, 5, 0, 0, null);
            assertEquals(NbdError.EINVAL.wireValue(), c.readErrorChunk(5));
        }
        assertServesNewClient();
    }

    @Test
    void writeLargerThanMaxShouldFailWithEinvalAndSkipPayload() throws IOException {
        int over = NbdServerConfig.MAX_PAYLOAD + 4096;
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiate("disk", false);
            c.request(0, NBD_CMD_WRITE, 9, 0, over, new byte[over]);
            assertEquals(NbdError.EINVAL.wireValue(), c.readSimple(0).error());
            c.request(0, NBD_CMD_READ, 10, 0, 8, null);
            assertArrayEquals(java.util.Arrays.copyOf(content, 8), c.readSimple(8).data());
        }
        assertServesNewClient();
    }

    @Test
    void writeFarLargerThanMaxShouldCloseConnection() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiate("disk", false);
            c.request(0, NBD_CMD_WRITE, 9, 0, 0xffff_fff0L, null);
            assertTrue(c.closedByServer());
        }
        assertServesNewClient();
    }

    @Test
    void unknownCommandAndBadFlagsShouldFailWithEinval() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiate("disk", false);
            c.request(0, 42, 1, 0, 0, null);
            assertEquals(NbdError.EINVAL.wireValue(), c.readSimple(0).error());
            c.request(NBD_CMD_FLAG_REQ_ONE, NBD_CMD_READ, 2, 0, 1, null);
            assertEquals(NbdError.EINVAL.wireValue(), c.readSimple(0).error());
            c.request(NBD_CMD_FLAG_DF, NBD_CMD_READ, 3, 0, 1, null);   // DF without structured replies
            assertEquals(NbdError.EINVAL.wireValue(), c.readSimple(0).error());
            c.request(0, NBD_CMD_TRIM, 4, 0, 512, null);                // TRIM not advertised on raw
            assertEquals(NbdError.EINVAL.wireValue(), c.readSimple(0).error());
        }
        assertServesNewClient();
    }

    @Test
    void blockStatusWithoutNegotiatedContextShouldFailWithEinval() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            NbdTestClient.check(c.option(NBD_OPT_STRUCTURED_REPLY));
            NbdTestClient.check(NbdTestClient.last(c.go("disk")));
            c.request(0, NBD_CMD_BLOCK_STATUS, 1, 0, 4096, null);
            assertEquals(NbdError.EINVAL.wireValue(), c.readErrorChunk(1));
        }
        assertServesNewClient();
    }

    @Test
    void blockStatusWithTwoContextsShouldCoverTheSameRange() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiate("disk", true, "base:allocation", "qemu:allocation-depth");
            c.request(0, NBD_CMD_BLOCK_STATUS, 1, 512, SIZE, null);   // runs past the end: answered to the end
            List<NbdTestClient.Chunk> chunks = c.readReply();
            assertEquals(2, chunks.size());
            for (NbdTestClient.Chunk ch : chunks) {
                assertEquals(NBD_REPLY_TYPE_BLOCK_STATUS, ch.type());
                ByteBuffer p = ch.buffer();
                int id = p.getInt();
                assertEquals(SIZE - 512, p.getInt());
                assertEquals(id == 0 ? 0 : 1, p.getInt());
                assertFalse(p.hasRemaining());
            }
            assertFalse(chunks.get(0).done());
            c.request(NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 2, 0, 4096, null);
            for (NbdTestClient.Chunk ch : c.readReply()) {
                assertEquals(12, ch.payload().length);
                assertEquals(4096, ch.buffer().getInt(4));
            }
        }
    }

    @Test
    void writeThenReadShouldRoundTripWithFuaAndZeroes() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiate("disk", true);
            byte[] data = new byte[65536];
            java.util.Arrays.fill(data, (byte) 0x5a);
            c.request(NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 1, 8192, data.length, data);
            assertEquals(0, c.readSimple(0).error());
            c.request(NBD_CMD_FLAG_NO_HOLE, NBD_CMD_WRITE_ZEROES, 2, 8192, 512, null);
            assertEquals(0, c.readSimple(0).error());
            c.request(0, NBD_CMD_FLUSH, 3, 0, 0, null);
            assertEquals(0, c.readSimple(0).error());
            c.request(NBD_CMD_FLAG_DF, NBD_CMD_READ, 4, 8192, 1024, null);
            List<NbdTestClient.Chunk> chunks = c.readReply();
            assertEquals(1, chunks.size());
            byte[] got = c.readDataOf(chunks, 8192, 1024);
            for (int i = 0; i < 512; i++) {
                assertEquals(0, got[i]);
                assertEquals(0x5a, got[512 + i]);
            }
            c.request(NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_WRITE_ZEROES, 5, 0, 512, null);
            // Advertised on raw, and honoured by failing fast: zeroing a raw file means writing data.
            assertEquals(NbdError.ENOTSUP.wireValue(), c.readSimple(0).error());
        }
        byte[] onDisk = Files.readAllBytes(image);
        assertEquals(0x5a, onDisk[8192 + 600]);
    }

    @Test
    void readOnlyExportShouldRefuseWritesWithEperm() throws IOException {
        server.shutdown();
        start(NbdServerConfig.unix(socket), true);
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiate("disk", true);
            assertTrue((c.transmissionFlags & NBD_FLAG_READ_ONLY) != 0);
            c.request(0, NBD_CMD_WRITE, 1, 0, 512, new byte[512]);
            assertEquals(NbdError.EPERM.wireValue(), c.readSimple(0).error());
            c.request(0, NBD_CMD_WRITE_ZEROES, 2, 0, 512, null);
            assertEquals(NbdError.EPERM.wireValue(), c.readSimple(0).error());
        }
        assertServesNewClient();
    }

    @Test
    void disconnectMidPayloadShouldNotLeakOrStopServer() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiate("disk", false);
            ByteBuffer b = ByteBuffer.allocate(28 + 1000);
            b.putInt(NBD_REQUEST_MAGIC).putShort((short) 0).putShort((short) NBD_CMD_WRITE).putLong(1).putLong(0)
                    .putInt(1 << 20).put(new byte[1000]).flip();
            c.send(b);
        }
        assertServesNewClient();
    }

    @Test
    void disconnectShouldAnswerInFlightRequestsFirst() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiate("disk", false);
            for (int i = 0; i < 20; i++) {
                c.request(0, NBD_CMD_READ, i, i * 4096L, 4096, null);
            }
            c.disconnect();
            boolean[] seen = new boolean[20];
            for (int i = 0; i < 20; i++) {
                NbdTestClient.Simple s = c.readSimple(4096);
                assertEquals(0, s.error());
                int k = (int) s.cookie();
                assertArrayEquals(java.util.Arrays.copyOfRange(content, k * 4096, k * 4096 + 4096), s.data());
                seen[k] = true;
            }
            assertTrue(c.closedByServer());
            for (boolean s : seen) {
                assertTrue(s);
            }
        }
    }

    @Test
    void manyClientsAtOnceShouldAllBeServed() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(12);
        try {
            List<Future<?>> f = new ArrayList<>();
            for (int i = 0; i < 12; i++) {
                f.add(pool.submit(() -> {
                    assertServesNewClient();
                    return null;
                }));
            }
            for (Future<?> x : f) {
                x.get(20, TimeUnit.SECONDS);
            }
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void clientsBeyondSharedLimitShouldBeRefused() throws IOException {
        server.shutdown();
        start(NbdServerConfig.unix(socket).withMaxConnections(1), false);
        try (NbdTestClient first = NbdTestClient.connect(socket)) {
            first.negotiate("disk", true);
            assertThrows(IOException.class, () -> NbdTestClient.open(socket));
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (true) {
            try {
                assertServesNewClient();
                break;
            } catch (IOException e) {
                if (System.nanoTime() > deadline) {
                    throw e;
                }
                Thread.onSpinWait();
            }
        }
    }

    @Test
    void clientThatStopsReadingShouldBeThrottledNotBuffered() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiate("disk", false);
            // Send reads without reading replies until the server stops reading: our writes then block.
            // Do it from a thread and give up after a bounded number of requests.
            Thread writer = new Thread(() -> {
                try {
                    for (int i = 0; i < 100_000; i++) {
                        c.request(0, NBD_CMD_READ, i, 0, 1 << 20, null);
                    }
                } catch (IOException e) {
                    // expected once we close the socket
                }
            });
            writer.setDaemon(true);
            writer.start();
            try {
                writer.join(5000);   // bounded wait for a thread that should stay blocked
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            assertTrue(writer.isAlive(), "server kept reading requests although no reply was read");
        }
        assertServesNewClient();
    }

    @Test
    void extendedHeadersShouldServe64BitLengthsAndBlockStatusExt() throws IOException {
        server.shutdown();
        Path big = dir.resolve("big.raw");
        long sixteenTiB = 16L << 40;
        try (RandomAccessFile f = new RandomAccessFile(big.toFile(), "rw")) {
            try {
                f.setLength(sixteenTiB);
            } catch (IOException e) {
                sixteenTiB -= 1 << 20;   // ext4 with 4 KiB blocks stops just short of 16 TiB
                f.setLength(sixteenTiB);
            }
        }
        Export export = new Export("big", null, RawImage.open(big, false), true, false, DirtyBitmapSource.NONE, false);
        server = new NbdServer(NbdServerConfig.unix(socket), new ExportRegistry(List.of(export))).start();
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            c.negotiateExtended("big", "base:allocation");
            assertEquals(sixteenTiB, c.exportSize);
            c.request(0, NBD_CMD_BLOCK_STATUS, 1, 0, sixteenTiB, null);
            NbdTestClient.Chunk ch = c.readChunk();
            assertEquals(NBD_REPLY_TYPE_BLOCK_STATUS_EXT, ch.type());
            assertTrue(ch.done());
            assertEquals(0, ch.offset());
            ByteBuffer p = ch.buffer();
            assertEquals(0, p.getInt());
            assertEquals(1, p.getInt());
            assertEquals(sixteenTiB, p.getLong());
            assertEquals(0, p.getLong());
            // A 64-bit read length above the maximum payload: refused, connection kept.
            c.request(0, NBD_CMD_READ, 2, 0, 1L << 33, null);
            assertEquals(NbdError.EINVAL.wireValue(), c.readErrorChunk(2));
            c.request(0, NBD_CMD_READ, 3, sixteenTiB - 4096, 4096, null);
            assertArrayEquals(new byte[4096], c.readData(3, sixteenTiB - 4096, 4096));
            c.request(0, NBD_CMD_FLUSH, 4, 0, 0, null);
            NbdTestClient.Chunk done = c.readChunk();
            assertEquals(NBD_REPLY_TYPE_NONE, done.type());
            assertEquals(4, done.cookie());
            c.disconnect();
            assertTrue(c.closedByServer());
        }
    }

    @Test
    void tlsRequiredShouldRefuseOptionsBeforeStartTls() throws Exception {
        server.shutdown();
        Path creds = TlsFixtures.create(dir.resolve("pki"));
        start(NbdServerConfig.unix(socket).withTls(NbdTls.serverContext(creds, false), true), false);
        try (NbdTestClient c = NbdTestClient.connect(socket)) {
            assertEquals(NBD_REP_ERR_TLS_REQD, c.option(NBD_OPT_STRUCTURED_REPLY).type());
            assertEquals(NBD_REP_ERR_TLS_REQD, NbdTestClient.last(c.go("disk")).type());
            c.sendOption(NBD_OPT_EXPORT_NAME, "disk".getBytes());
            assertTrue(c.closedByServer());
        }
    }
}
