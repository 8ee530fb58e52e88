package dev.shear.nbd.protocol;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.EncoderException;
import io.netty.handler.codec.MessageToMessageEncoder;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * Encodes {@link NbdReply} messages (nbd-protocol.md §5). Chunk headers:
 * <pre>
 * structured (20 bytes)                extended (32 bytes, after NBD_OPT_EXTENDED_HEADERS)
 *   0  4  magic 0x668e33ef               0  4  magic 0x6e8a278c
 *   4  2  flags (bit 0 DONE)             4  2  flags (bit 0 DONE)
 *   6  2  chunk type                     6  2  chunk type
 *   8  8  cookie                         8  8  cookie
 *  16  4  payload length                16  8  request offset (echoed)
 *                                       24  8  payload length
 * </pre>
 *
 * <p>Ownership (style.md §4 rule 4): a header buffer is allocated here; data parts of
 * {@link NbdPayloadReply}s are retained and passed through as they are (ByteBuf or FileRegion, which
 * the transport sends with sendfile), and {@link MessageToMessageEncoder} then releases the message,
 * so each part ends with exactly the reference the transport will drop after the socket write.
 * That release also returns pooled messages to their recycler ({@link NbdPooledMessage}): nothing
 * may keep a reply after writing it.
 *
 * <p>Allocation: one pooled header buffer per message (holding the whole chunk when it has no data
 * parts), nothing else; no iterators, no boxing. JMH: NbdFramingBenchmark.
 */
public final class NbdReplyEncoder extends MessageToMessageEncoder<NbdReply> {
    /** Error messages stay short: QEMU's client hangs up on a non-data chunk above 1000 bytes. */
    static final int MAX_MESSAGE_BYTES = 512;

    private final boolean extended;

    /** @param extended use extended reply headers (simple replies are then refused) */
    public NbdReplyEncoder(boolean extended) {
        super(NbdReply.class);
        this.extended = extended;
    }

    @Override
    protected void encode(ChannelHandlerContext ctx, NbdReply msg, List<Object> out) {
        if (msg instanceof NbdSimpleReply r) {
            if (extended) {
                throw new EncoderException("simple reply under extended headers: " + r);
            }
            ByteBuf header = ctx.alloc().ioBuffer(NbdConstants.SIMPLE_REPLY_HEADER_LENGTH);
            header.writeInt(NbdConstants.NBD_SIMPLE_REPLY_MAGIC);
            header.writeInt(r.error() == null ? 0 : r.error().wireValue());
            header.writeLong(r.cookie());
            out.add(header);
            addParts(r, out);
        } else if (msg instanceof NbdOffsetDataChunk c) {
            ByteBuf header = chunkHeader(ctx, c.cookie(), c.requestOffset(), c.done(),
                    NbdConstants.NBD_REPLY_TYPE_OFFSET_DATA, 8 + c.dataLength(), 8);
            header.writeLong(c.offset());
            out.add(header);
            addParts(c, out);
        } else if (msg instanceof NbdReply.OffsetHoleChunk c) {
            ByteBuf b = chunkHeader(ctx, c.cookie(), c.requestOffset(), c.done(),
                    NbdConstants.NBD_REPLY_TYPE_OFFSET_HOLE, 12, 12);
            b.writeLong(c.offset());
            b.writeInt(c.length());
            out.add(b);
        } else if (msg instanceof NbdReply.BlockStatusChunk c) {
            out.add(blockStatus(ctx, c));
        } else if (msg instanceof NbdReply.ErrorChunk c) {
            byte[] text = NbdOptionReplyEncoder.truncatedUtf8(c.message(), MAX_MESSAGE_BYTES);
            ByteBuf b = chunkHeader(ctx, c.cookie(), c.requestOffset(), c.done(),
                    NbdConstants.NBD_REPLY_TYPE_ERROR, 6 + text.length, 6 + text.length);
            b.writeInt(c.error().wireValue());
            b.writeShort(text.length);
            b.writeBytes(text);
            out.add(b);
        } else if (msg instanceof NbdReply.DoneChunk c) {
            out.add(chunkHeader(ctx, c.cookie(), c.requestOffset(), true, NbdConstants.NBD_REPLY_TYPE_NONE, 0, 0));
        }
    }

    /*
     * BLOCK_STATUS payload:      4 context id, n x { 4 length, 4 flags }
     * BLOCK_STATUS_EXT payload:  4 context id, 4 count n, n x { 8 length, 8 flags }
     */
    private ByteBuf blockStatus(ChannelHandlerContext ctx, NbdReply.BlockStatusChunk c) {
        int n = c.count();
        if (extended) {
            int length = 8 + 16 * n;
            ByteBuf b = chunkHeader(ctx, c.cookie(), c.requestOffset(), c.done(),
                    NbdConstants.NBD_REPLY_TYPE_BLOCK_STATUS_EXT, length, length);
            b.writeInt(c.contextId());
            b.writeInt(n);
            long[] lengths = c.lengths();
            long[] flags = c.flags();
            for (int i = 0; i < n; i++) {
                b.writeLong(lengths[i]);
                b.writeLong(flags[i]);
            }
            return b;
        }
        int length = 4 + 8 * n;
        ByteBuf b = chunkHeader(ctx, c.cookie(), c.requestOffset(), c.done(),
                NbdConstants.NBD_REPLY_TYPE_BLOCK_STATUS, length, length);
        b.writeInt(c.contextId());
        long[] lengths = c.lengths();
        long[] flags = c.flags();
        for (int i = 0; i < n; i++) {
            long extentLength = lengths[i];
            if (extentLength <= 0 || extentLength > 0xffffffffL) {
                b.release();
                throw new EncoderException("extent length: " + extentLength + " (expected: 1..2^32-1)");
            }
            b.writeInt((int) extentLength);
            b.writeInt((int) flags[i]);
        }
        return b;
    }

    /** Allocates a buffer for a chunk header plus {@code extra} bytes and writes the header. */
    private ByteBuf chunkHeader(ChannelHandlerContext ctx, long cookie, long requestOffset, boolean done,
            int type, long payloadLength, int extra) {
        int flags = done ? NbdConstants.NBD_REPLY_FLAG_DONE : 0;
        if (extended) {
            ByteBuf b = ctx.alloc().ioBuffer(NbdConstants.EXTENDED_REPLY_HEADER_LENGTH + extra);
            b.writeInt(NbdConstants.NBD_EXTENDED_REPLY_MAGIC);
            b.writeShort(flags);
            b.writeShort(type);
            b.writeLong(cookie);
            b.writeLong(requestOffset);
            b.writeLong(payloadLength);
            return b;
        }
        if (payloadLength > 0xffffffffL) {
            throw new EncoderException("chunk payload length: " + payloadLength + " (expected: < 2^32)");
        }
        ByteBuf b = ctx.alloc().ioBuffer(NbdConstants.STRUCTURED_REPLY_HEADER_LENGTH + extra);
        b.writeInt(NbdConstants.NBD_STRUCTURED_REPLY_MAGIC);
        b.writeShort(flags);
        b.writeShort(type);
        b.writeLong(cookie);
        b.writeInt((int) payloadLength);
        return b;
    }

    /** Forwards the data parts; each retain is balanced by the message release in our superclass. */
    private static void addParts(NbdPayloadReply reply, List<Object> out) {
        int n = reply.partCount();
        for (int i = 0; i < n; i++) {
            out.add(reply.part(i).retain());
        }
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }
}
