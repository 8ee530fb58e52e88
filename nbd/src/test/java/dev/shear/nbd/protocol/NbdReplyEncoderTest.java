package dev.shear.nbd.protocol;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.handler.codec.EncoderException;
import java.util.List;
import org.junit.jupiter.api.Test;

class NbdReplyEncoderTest {

    private static ByteBuf drain(EmbeddedChannel ch) {
        ByteBuf all = Unpooled.buffer();
        ByteBuf b;
        while ((b = ch.readOutbound()) != null) {
            all.writeBytes(b);
            b.release();
        }
        return all;
    }

    @Test
    void simpleReadReplyShouldBeHeaderThenData() {
        EmbeddedChannel ch = new EmbeddedChannel(new NbdReplyEncoder(false));
        ByteBuf data = Unpooled.directBuffer(4).writeInt(0x01020304);
        ch.writeOutbound(NbdSimpleReply.newReadInstance(0xabcdL, List.of(data)));
        ByteBuf out = drain(ch);
        assertEquals(NbdConstants.NBD_SIMPLE_REPLY_MAGIC, out.readInt());
        assertEquals(0, out.readInt());
        assertEquals(0xabcdL, out.readLong());
        assertEquals(0x01020304, out.readInt());
        assertFalse(out.isReadable());
        out.release();
        assertEquals(0, data.refCnt());
        assertFalse(ch.finishAndReleaseAll());
    }

    @Test
    void offsetDataChunkShouldCarryOffsetAndDone() {
        EmbeddedChannel ch = new EmbeddedChannel(new NbdReplyEncoder(false));
        ByteBuf a = Unpooled.directBuffer(2).writeShort(7);
        ByteBuf b = Unpooled.directBuffer(2).writeShort(8);
        ch.writeOutbound(NbdOffsetDataChunk.newInstance(5, 4096, 4096, List.of(a, b), true));
        ByteBuf out = drain(ch);
        assertEquals(NbdConstants.NBD_STRUCTURED_REPLY_MAGIC, out.readInt());
        assertEquals(NbdConstants.NBD_REPLY_FLAG_DONE, out.readShort());
        assertEquals(NbdConstants.NBD_REPLY_TYPE_OFFSET_DATA, out.readShort());
        assertEquals(5, out.readLong());
        assertEquals(12, out.readInt());
        assertEquals(4096, out.readLong());
        assertEquals(7, out.readShort());
        assertEquals(8, out.readShort());
        out.release();
        assertFalse(ch.finishAndReleaseAll());
    }

    @Test
    void extendedBlockStatusShouldUse64BitDescriptors() {
        EmbeddedChannel ch = new EmbeddedChannel(new NbdReplyEncoder(true));
        ch.writeOutbound(NbdReply.BlockStatusChunk.newInstance(9, 1L << 40, 0, new long[] {16L << 40}, new long[] {3},
                1, true));
        ByteBuf out = drain(ch);
        assertEquals(NbdConstants.NBD_EXTENDED_REPLY_MAGIC, out.readInt());
        assertEquals(1, out.readShort());
        assertEquals(NbdConstants.NBD_REPLY_TYPE_BLOCK_STATUS_EXT, out.readShort());
        assertEquals(9, out.readLong());
        assertEquals(1L << 40, out.readLong());
        assertEquals(24, out.readLong());
        assertEquals(0, out.readInt());
        assertEquals(1, out.readInt());
        assertEquals(16L << 40, out.readLong());
        assertEquals(3, out.readLong());
        out.release();
        assertFalse(ch.finishAndReleaseAll());
    }

    @Test
    void holeErrorAndDoneChunksShouldEncode() {
        EmbeddedChannel ch = new EmbeddedChannel(new NbdReplyEncoder(false));
        ch.writeOutbound(NbdReply.OffsetHoleChunk.newInstance(1, 0, 512, 1024, false),
                new NbdReply.ErrorChunk(1, 0, NbdError.EIO, "boom", true), NbdReply.DoneChunk.newInstance(2, 0));
        ByteBuf out = drain(ch);
        assertEquals(20 + 12 + 20 + 6 + 4 + 20, out.readableBytes());
        assertEquals(NbdConstants.NBD_REPLY_TYPE_OFFSET_HOLE, out.getShort(6));
        assertEquals(1024, out.getInt(20 + 8));
        assertEquals(NbdConstants.NBD_REPLY_TYPE_ERROR, out.getShort(32 + 6) & 0xffff);
        assertEquals(5, out.getInt(32 + 20));
        out.release();
        assertFalse(ch.finishAndReleaseAll());
    }

    @Test
    void simpleReplyUnderExtendedHeadersShouldBeRefused() {
        EmbeddedChannel ch = new EmbeddedChannel(new NbdReplyEncoder(true));
        assertThrows(EncoderException.class, () -> ch.writeOutbound(NbdSimpleReply.newInstance(1, null)));
        assertFalse(ch.finishAndReleaseAll());
    }
}
