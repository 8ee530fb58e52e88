package dev.shear.nbd.protocol;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.handler.codec.DecoderException;
import java.nio.ByteBuffer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class NbdRequestDecoderTest {
    static final int MAX = 1 << 16;
    private EmbeddedChannel channel;

    private void open(boolean extended) {
        channel = new EmbeddedChannel(new NbdRequestDecoder(extended, MAX));
    }

    @AfterEach
    void tearDown() {
        if (channel.isOpen()) {
            assertFalse(channel.finishAndReleaseAll(), "decoder left messages behind");
        } else {
            channel.finishAndReleaseAll();
        }
    }

    /** A compact request: magic, flags, type, cookie, offset, 32-bit length, payload. */
    static byte[] request(int flags, int type, long cookie, long offset, int length, byte[] payload) {
        ByteBuffer b = ByteBuffer.allocate(28 + (payload == null ? 0 : payload.length));
        b.putInt(NbdConstants.NBD_REQUEST_MAGIC).putShort((short) flags).putShort((short) type).putLong(cookie)
                .putLong(offset).putInt(length);
        if (payload != null) {
            b.put(payload);
        }
        return b.array();
    }

    static byte[] extendedRequest(int flags, int type, long cookie, long offset, long length, byte[] payload) {
        ByteBuffer b = ByteBuffer.allocate(32 + (payload == null ? 0 : payload.length));
        b.putInt(NbdConstants.NBD_EXTENDED_REQUEST_MAGIC).putShort((short) flags).putShort((short) type)
                .putLong(cookie).putLong(offset).putLong(length);
        if (payload != null) {
            b.put(payload);
        }
        return b.array();
    }

    private void feedWhole(byte[] wire) {
        channel.writeInbound(Unpooled.wrappedBuffer(wire));
    }

    private void feedByteByByte(byte[] wire) {
        for (byte b : wire) {
            channel.writeInbound(Unpooled.wrappedBuffer(new byte[] {b}));
        }
    }

    /** Asserts the cookie of a request read from the channel, and releases it. */
    private static void assertCookie(long cookie, NbdRequest r) {
        try {
            assertEquals(cookie, r.cookie());
        } finally {
            r.release();
        }
    }

    @Test
    void readShouldDecodeWholeAndByteByByte() {
        open(false);
        byte[] wire = request(0, NbdConstants.NBD_CMD_READ, 0x1234L, 4096, 512, null);
        feedWhole(wire);
        feedByteByByte(wire);
        for (int i = 0; i < 2; i++) {
            NbdRequest r = channel.readInbound();
            assertEquals(NbdConstants.NBD_CMD_READ, r.type());
            assertEquals(0x1234L, r.cookie());
            assertEquals(4096, r.offset());
            assertEquals(512, r.length());
            assertNull(r.rejected());
            assertFalse(r.hasPayload());
            assertTrue(r.release());
        }
        assertNull(channel.readInbound());
    }

    @Test
    void writeSplitAtEveryByteShouldDecodeOnce() {
        open(false);
        byte[] payload = new byte[512];
        payload[511] = 9;
        feedByteByByte(request(NbdConstants.NBD_CMD_FLAG_FUA, NbdConstants.NBD_CMD_WRITE, 1, 4096, 512, payload));
        NbdRequest w = channel.readInbound();
        try {
            assertEquals(4096, w.offset());
            assertTrue(w.hasFlag(NbdConstants.NBD_CMD_FLAG_FUA));
            assertEquals(512, w.payloadLength());
            assertEquals(512, w.payload().readableBytes());
            assertEquals(9, w.payload().getByte(511));
            assertEquals(9, w.payloadNioBuffer().get(511));
        } finally {
            w.release();
        }
        assertNull(channel.readInbound());
    }

    @Test
    void backToBackFramesShouldDecodeInOrder() {
        open(false);
        byte[] a = request(0, NbdConstants.NBD_CMD_WRITE, 1, 0, 3, new byte[] {1, 2, 3});
        byte[] b = request(0, NbdConstants.NBD_CMD_FLUSH, 2, 0, 0, null);
        byte[] c = request(0, NbdConstants.NBD_CMD_DISC, 3, 0, 0, null);
        ByteBuf all = Unpooled.wrappedBuffer(a, b, c);
        channel.writeInbound(all);
        NbdRequest w = channel.readInbound();
        assertArrayEquals(new byte[] {1, 2, 3}, ByteBufUtil.getBytes(w.payload()));
        w.release();
        assertCookie(2, channel.readInbound());
        assertCookie(3, channel.readInbound());
        assertNull(channel.readInbound());
    }

    @Test
    void oversizedWriteShouldBeRejectedAndItsPayloadSkipped() {
        open(false);
        byte[] big = new byte[MAX + 10];
        feedWhole(request(0, NbdConstants.NBD_CMD_WRITE, 7, 0, big.length, big));
        feedWhole(request(0, NbdConstants.NBD_CMD_READ, 8, 0, 1, null));
        NbdRequest r = channel.readInbound();
        assertEquals(NbdError.EINVAL, r.rejected());
        assertEquals(7, r.cookie());
        assertFalse(r.hasPayload());
        r.release();
        assertCookie(8, channel.readInbound());
        assertNull(channel.readInbound());
    }

    @Test
    void writeTooLargeToSkipShouldBeFatal() {
        open(false);
        DecoderException e = assertThrows(DecoderException.class,
                () -> feedWhole(request(0, NbdConstants.NBD_CMD_WRITE, 7, 0, 3 * MAX, null)));
        assertInstanceOf(NbdProtocolException.class, e);
        assertTrue(e.getMessage().contains("WRITE payload length: " + 3 * MAX), e.getMessage());
    }

    @Test
    void badMagicShouldBeFatal() {
        open(false);
        DecoderException e = assertThrows(DecoderException.class, () -> feedWhole(new byte[28]));
        assertTrue(e.getMessage().contains("request magic: 0x00000000"), e.getMessage());
    }

    @Test
    void compactMagicUnderExtendedHeadersShouldBeFatal() {
        open(true);
        byte[] compact = request(0, NbdConstants.NBD_CMD_READ, 1, 0, 1, null);
        byte[] padded = java.util.Arrays.copyOf(compact, 32);
        DecoderException e = assertThrows(DecoderException.class, () -> feedWhole(padded));
        assertTrue(e.getMessage().contains("expected: 0x21e41c71"), e.getMessage());
    }

    @Test
    void extendedRequestShouldCarry64BitLength() {
        open(true);
        byte[] wire = extendedRequest(0, NbdConstants.NBD_CMD_BLOCK_STATUS, 5, 1L << 40, 16L << 40, null);
        feedByteByByte(wire);
        NbdRequest r = channel.readInbound();
        assertTrue(r.extended());
        assertEquals(16L << 40, r.length());
        assertEquals(1L << 40, r.offset());
        r.release();
    }

    @Test
    void extendedWriteWithPayloadLenShouldDecode() {
        open(true);
        feedWhole(extendedRequest(NbdConstants.NBD_CMD_FLAG_PAYLOAD_LEN, NbdConstants.NBD_CMD_WRITE, 5, 0, 4,
                new byte[] {1, 2, 3, 4}));
        NbdRequest w = channel.readInbound();
        assertEquals(4, w.payloadLength());
        assertArrayEquals(new byte[] {1, 2, 3, 4}, ByteBufUtil.getBytes(w.payload()));
        w.release();
    }

    @Test
    void extendedPayloadOnReadShouldBeSkippedAndRejected() {
        open(true);
        feedWhole(extendedRequest(NbdConstants.NBD_CMD_FLAG_PAYLOAD_LEN, NbdConstants.NBD_CMD_READ, 5, 0, 4,
                new byte[] {1, 2, 3, 4}));
        feedWhole(extendedRequest(0, NbdConstants.NBD_CMD_FLUSH, 6, 0, 0, null));
        NbdRequest rejected = channel.readInbound();
        assertEquals(NbdError.EINVAL, rejected.rejected());
        rejected.release();
        assertCookie(6, channel.readInbound());
    }

    @Test
    void partialPayloadAtCloseShouldBeReleased() {
        open(false);
        byte[] wire = request(0, NbdConstants.NBD_CMD_WRITE, 1, 0, 1000, new byte[1000]);
        feedWhole(java.util.Arrays.copyOf(wire, 500));
        assertNull(channel.readInbound());
    }
}
