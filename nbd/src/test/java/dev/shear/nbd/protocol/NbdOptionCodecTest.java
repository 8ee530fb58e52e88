package dev.shear.nbd.protocol;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.handler.codec.DecoderException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** {@link NbdOptionDecoder} and {@link NbdOptionReplyEncoder}. */
class NbdOptionCodecTest {
    private EmbeddedChannel channel;

    @BeforeEach
    void setUp() {
        channel = new EmbeddedChannel(new NbdOptionDecoder(1 << 16, 8, true), new NbdOptionReplyEncoder());
    }

    @AfterEach
    void tearDown() {
        if (channel.isOpen()) {
            assertFalse(channel.finishAndReleaseAll(), "codec left messages behind");
        } else {
            channel.finishAndReleaseAll();
        }
    }

    static byte[] option(int code, byte[] data) {
        return ByteBuffer.allocate(16 + data.length).putLong(NbdConstants.NBD_NEW_VERSION).putInt(code)
                .putInt(data.length).put(data).array();
    }

    static byte[] go(String name, int... infos) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(6 + n.length + 2 * infos.length).putInt(n.length).put(n)
                .putShort((short) infos.length);
        for (int i : infos) {
            b.putShort((short) i);
        }
        return option(NbdConstants.NBD_OPT_GO, b.array());
    }

    private static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) {
            n += p.length;
        }
        ByteBuffer b = ByteBuffer.allocate(n);
        for (byte[] p : parts) {
            b.put(p);
        }
        return b.array();
    }

    private static final byte[] FLAGS = {0, 0, 0, 3};

    @Test
    void flagsThenGoShouldDecodeWholeByteByByteAndBackToBack() {
        byte[] wire = concat(FLAGS, go("disk", 3, 1), option(NbdConstants.NBD_OPT_STRUCTURED_REPLY, new byte[0]));
        for (byte b : wire) {
            channel.writeInbound(Unpooled.wrappedBuffer(new byte[] {b}));
        }
        assertEquals(3, ((NbdOption.ClientFlags) channel.readInbound()).flags());
        NbdOption.Info info = channel.readInbound();
        assertTrue(info.go());
        assertEquals("disk", info.exportName());
        assertArrayEquals(new int[] {3, 1}, info.infoRequests());
        assertInstanceOf(NbdOption.StructuredReply.class, channel.readInbound());
        assertNull(channel.readInbound());
    }

    @Test
    void metaContextQueriesShouldDecode() {
        byte[] n = "disk".getBytes(StandardCharsets.UTF_8);
        byte[] q1 = "base:allocation".getBytes(StandardCharsets.UTF_8);
        byte[] q2 = "qemu:dirty-bitmap:".getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + n.length + 8 + q1.length + q2.length);
        b.putInt(n.length).put(n).putInt(2).putInt(q1.length).put(q1).putInt(q2.length).put(q2);
        channel.writeInbound(Unpooled.wrappedBuffer(concat(FLAGS, option(NbdConstants.NBD_OPT_SET_META_CONTEXT,
                b.array()))));
        channel.readInbound();
        NbdOption.MetaContext m = channel.readInbound();
        assertTrue(m.set());
        assertEquals(List.of("base:allocation", "qemu:dirty-bitmap:"), m.queries());
    }

    @Test
    void malformedDataShouldDecodeToInvalidNotFail() {
        channel.writeInbound(Unpooled.wrappedBuffer(concat(FLAGS,
                option(NbdConstants.NBD_OPT_GO, new byte[] {0, 0, 0, 9, 1, 0}),
                option(NbdConstants.NBD_OPT_LIST, new byte[] {1}),
                option(NbdConstants.NBD_OPT_EXPORT_NAME, new byte[] {'a', 0}),
                option(77, new byte[] {1, 2, 3}))));
        channel.readInbound();
        NbdOption.Invalid a = channel.readInbound();
        assertTrue(a.reason().contains("name length: 9"), a.reason());
        assertInstanceOf(NbdOption.Invalid.class, channel.readInbound());
        assertInstanceOf(NbdOption.Invalid.class, channel.readInbound());
        assertEquals(77, ((NbdOption.Unknown) channel.readInbound()).code());
        assertTrue(channel.isOpen());
    }

    @Test
    void oversizedOptionShouldBeFatal() {
        ByteBuffer h = ByteBuffer.allocate(20).put(FLAGS).putLong(NbdConstants.NBD_NEW_VERSION)
                .putInt(NbdConstants.NBD_OPT_GO).putInt((1 << 16) + 1);
        channel.writeInbound(Unpooled.wrappedBuffer(java.util.Arrays.copyOf(h.array(), 4)));
        channel.readInbound();
        DecoderException e = assertThrows(DecoderException.class,
                () -> channel.writeInbound(Unpooled.wrappedBuffer(h.array(), 4, 16)));
        assertTrue(e.getMessage().contains("NBD_OPT_GO length: 65537 (expected: <= 65536)"), e.getMessage());
    }

    @Test
    void tooManyOptionsShouldBeFatal() {
        channel.writeInbound(Unpooled.wrappedBuffer(FLAGS));
        channel.readInbound();
        for (int i = 0; i < 8; i++) {
            channel.writeInbound(Unpooled.wrappedBuffer(option(NbdConstants.NBD_OPT_LIST, new byte[0])));
            channel.readInbound();
        }
        assertThrows(DecoderException.class,
                () -> channel.writeInbound(Unpooled.wrappedBuffer(option(NbdConstants.NBD_OPT_LIST, new byte[0]))));
    }

    @Test
    void badOptionMagicShouldBeFatal() {
        channel.writeInbound(Unpooled.wrappedBuffer(FLAGS));
        channel.readInbound();
        DecoderException e = assertThrows(DecoderException.class,
                () -> channel.writeInbound(Unpooled.wrappedBuffer(new byte[16])));
        assertTrue(e.getMessage().contains("option magic: 0x0000000000000000"), e.getMessage());
    }

    @Test
    void unknownClientFlagsShouldBeFatal() {
        assertThrows(DecoderException.class,
                () -> channel.writeInbound(Unpooled.wrappedBuffer(new byte[] {0, 0, 0, 7})));
    }

    @Test
    void repliesShouldEncodeSpecLayouts() {
        channel.writeOutbound(new NbdOptionReply.InfoExport(NbdConstants.NBD_OPT_GO, 1 << 20, 0x48d));
        ByteBuf b = channel.readOutbound();
        try {
            assertEquals(NbdConstants.NBD_REP_MAGIC, b.readLong());
            assertEquals(NbdConstants.NBD_OPT_GO, b.readInt());
            assertEquals(NbdConstants.NBD_REP_INFO, b.readInt());
            assertEquals(12, b.readInt());
            assertEquals(NbdConstants.NBD_INFO_EXPORT, b.readShort());
            assertEquals(1 << 20, b.readLong());
            assertEquals(0x48d, b.readShort());
            assertFalse(b.isReadable());
        } finally {
            b.release();
        }
        channel.writeOutbound(new NbdOptionReply.InfoBlockSize(NbdConstants.NBD_OPT_GO, 1, 4096, 32 << 20));
        ByteBuf bs = channel.readOutbound();
        assertEquals(20 + 14, bs.readableBytes());
        bs.release();
        channel.writeOutbound(new NbdOptionReply.ExportNameReply(512, 1, false));
        ByteBuf en = channel.readOutbound();
        assertEquals(134, en.readableBytes());
        en.release();
        String longMessage = "x".repeat(5000);
        channel.writeOutbound(new NbdOptionReply.Error(9, NbdConstants.NBD_REP_ERR_INVALID, longMessage));
        ByteBuf err = channel.readOutbound();
        assertEquals(NbdOptionReplyEncoder.MAX_MESSAGE_BYTES, err.getInt(16));
        err.release();
    }
}
