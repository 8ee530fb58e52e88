package dev.shear.nbd.protocol;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.channel.ChannelHandler.Sharable;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.MessageToByteEncoder;
import java.nio.charset.StandardCharsets;

/**
 * Encodes {@link NbdOptionReply}s (nbd-protocol.md §2.4). Option reply layout:
 * <pre>
 *   0  8  magic 0x0003e889045565a9
 *   8  4  option being answered
 *  12  4  reply type
 *  16  4  length of reply data
 *  20  *  reply data
 * </pre>
 * Stateless, hence sharable.
 */
@Sharable
public final class NbdOptionReplyEncoder extends MessageToByteEncoder<NbdOptionReply> {
    /** Error messages are truncated so that QEMU's client (1000-byte limit on non-data) accepts them. */
    static final int MAX_MESSAGE_BYTES = 512;

    public static final NbdOptionReplyEncoder INSTANCE = new NbdOptionReplyEncoder();

    public NbdOptionReplyEncoder() {
        super(NbdOptionReply.class);
    }

    @Override
    protected void encode(ChannelHandlerContext ctx, NbdOptionReply msg, ByteBuf out) {
        if (msg instanceof NbdOptionReply.Greeting g) {
            out.writeLong(NbdConstants.NBD_MAGIC);
            out.writeLong(NbdConstants.NBD_NEW_VERSION);
            out.writeShort(g.handshakeFlags());
        } else if (msg instanceof NbdOptionReply.ExportNameReply r) {
            out.writeLong(r.size());
            out.writeShort(r.transmissionFlags());
            if (!r.noZeroes()) {
                out.writeZero(124);
            }
        } else if (msg instanceof NbdOptionReply.Ack a) {
            header(out, a.option(), NbdConstants.NBD_REP_ACK, 0);
        } else if (msg instanceof NbdOptionReply.Server s) {
            byte[] name = utf8(s.name());
            byte[] description = s.description() == null ? new byte[0] : utf8(s.description());
            header(out, s.option(), NbdConstants.NBD_REP_SERVER, 4 + name.length + description.length);
            out.writeInt(name.length);
            out.writeBytes(name);
            out.writeBytes(description);
        } else if (msg instanceof NbdOptionReply.InfoExport i) {
            header(out, i.option(), NbdConstants.NBD_REP_INFO, 12);
            out.writeShort(NbdConstants.NBD_INFO_EXPORT);
            out.writeLong(i.size());
            out.writeShort(i.transmissionFlags());
        } else if (msg instanceof NbdOptionReply.InfoName i) {
            info(out, i.option(), NbdConstants.NBD_INFO_NAME, utf8(i.name()));
        } else if (msg instanceof NbdOptionReply.InfoDescription i) {
            info(out, i.option(), NbdConstants.NBD_INFO_DESCRIPTION, utf8(i.description()));
        } else if (msg instanceof NbdOptionReply.InfoBlockSize i) {
            header(out, i.option(), NbdConstants.NBD_REP_INFO, 14);
            out.writeShort(NbdConstants.NBD_INFO_BLOCK_SIZE);
            out.writeInt(i.minimum());
            out.writeInt(i.preferred());
            out.writeInt(i.maximum());
        } else if (msg instanceof NbdOptionReply.MetaContextReply m) {
            byte[] name = utf8(m.name());
            header(out, m.option(), NbdConstants.NBD_REP_META_CONTEXT, 4 + name.length);
            out.writeInt(m.contextId());
            out.writeBytes(name);
        } else if (msg instanceof NbdOptionReply.Error e) {
            byte[] message = truncatedUtf8(e.message(), MAX_MESSAGE_BYTES);
            header(out, e.option(), e.type(), message.length);
            out.writeBytes(message);
        }
    }

    private static void header(ByteBuf out, int option, int type, int length) {
        out.writeLong(NbdConstants.NBD_REP_MAGIC);
        out.writeInt(option);
        out.writeInt(type);
        out.writeInt(length);
    }

    private static void info(ByteBuf out, int option, int infoType, byte[] text) {
        header(out, option, NbdConstants.NBD_REP_INFO, 2 + text.length);
        out.writeShort(infoType);
        out.writeBytes(text);
    }

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** UTF-8 of {@code s}, cut at a character boundary so that it fits {@code max} bytes. */
    static byte[] truncatedUtf8(String s, int max) {
        if (s == null) {
            return new byte[0];
        }
        if (ByteBufUtil.utf8MaxBytes(s) <= max) {
            return utf8(s);
        }
        int end = s.length();
        byte[] b = utf8(s);
        while (b.length > max) {
            end = Math.max(0, end - Math.max(1, (b.length - max) / 3));
            if (end > 0 && Character.isLowSurrogate(s.charAt(end))) {
                end--;
            }
            b = utf8(s.substring(0, end));
        }
        return b;
    }
}
