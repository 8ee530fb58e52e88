package dev.shear.nbd.protocol;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import java.util.List;

/**
 * Benchmarks only: the protected {@code decode}/{@code encode} of the NBD codecs, called directly (no
 * pipeline, no EmbeddedChannel), so that a benchmark measures the codec and nothing around it. Lives in
 * the codec's package for access; not part of the server.
 */
public final class NbdCodecAccess {
    private NbdCodecAccess() {
    }

    public static void decode(NbdRequestDecoder decoder, ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
        decoder.decode(ctx, in, out);
    }

    public static void encode(NbdReplyEncoder encoder, ChannelHandlerContext ctx, NbdReply msg, List<Object> out) {
        encoder.encode(ctx, msg, out);
    }
}
