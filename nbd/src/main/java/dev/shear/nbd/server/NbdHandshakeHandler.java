package dev.shear.nbd.server;

import dev.shear.block.BlockCapabilities;
import dev.shear.nbd.protocol.NbdConstants;
import dev.shear.nbd.protocol.NbdOption;
import dev.shear.nbd.protocol.NbdOptionDecoder;
import dev.shear.nbd.protocol.NbdOptionReply;
import dev.shear.nbd.protocol.NbdOptionReplyEncoder;
import dev.shear.nbd.protocol.NbdProtocolException;
import dev.shear.nbd.protocol.NbdReplyEncoder;
import dev.shear.nbd.protocol.NbdRequestDecoder;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelPipeline;
import io.netty.handler.ssl.SslHandler;
import io.netty.util.ReferenceCountUtil;
import java.util.List;
import java.util.concurrent.Executor;

/**
 * Fixed-newstyle negotiation of one connection (nbd-protocol.md §2): greeting, client flags, then
 * options strictly in order, each fully answered before the next is read (the decoder buffers one
 * option whole, so the reply always follows the complete read).
 *
 * <p>State (all event-loop confined): structured replies, extended headers, the selected meta
 * contexts and the export name they were selected for, TLS. STARTTLS forgets all of them (§2.7);
 * SET_META_CONTEXT replaces the selection even when it fails (§2.10); GO/EXPORT_NAME to a different
 * export than the selection's voids it.
 *
 * <p>Errors: framing errors from the decoder (and EXPORT_NAME failures, which cannot be reported)
 * close the connection; everything else is an option-scoped NBD_REP_ERR_* reply (style.md §3).
 *
 * <p>On GO / EXPORT_NAME the pipeline switches to transmission: the request decoder, reply encoder
 * and {@link NbdTransmissionHandler} are added after the option decoder, the handshake handlers
 * removed, and the option decoder removed last so that bytes it buffered flow to the request decoder.
 */
public final class NbdHandshakeHandler extends ChannelInboundHandlerAdapter {
    static final String OPTION_DECODER = "nbd-option-decoder";
    static final String OPTION_ENCODER = "nbd-option-encoder";
    static final String HANDSHAKE = "nbd-handshake";
    static final String REQUEST_DECODER = "nbd-request-decoder";
    static final String REPLY_ENCODER = "nbd-reply-encoder";
    static final String TRANSMISSION = "nbd-transmission";
    static final String TLS = "nbd-tls";

    private final ServerContext server;
    private final long connectionId;
    private boolean fixedNewstyle;
    private boolean noZeroes;
    private boolean tls;
    private boolean structured;
    private boolean extended;
    /** The last SET_META_CONTEXT's selection and the export it named; null = none. */
    private List<MetaContext> contexts;
    private String contextsExport;

    NbdHandshakeHandler(ServerContext server, long connectionId) {
        this.server = server;
        this.connectionId = connectionId;
    }

    /** Installs the handshake handlers on a fresh pipeline. */
    static void install(ChannelPipeline p, ServerContext server, long connectionId) {
        NbdServerConfig c = server.config();
        p.addLast(OPTION_DECODER, new NbdOptionDecoder(c.maxOptionLength(), c.maxOptions(), true));
        p.addLast(OPTION_ENCODER, NbdOptionReplyEncoder.INSTANCE);
        p.addLast(HANDSHAKE, new NbdHandshakeHandler(server, connectionId));
    }

    @Override
    public void channelActive(ChannelHandlerContext ctx) {
        ctx.writeAndFlush(new NbdOptionReply.Greeting(NbdConstants.NBD_FLAG_FIXED_NEWSTYLE
                | NbdConstants.NBD_FLAG_NO_ZEROES));
        ctx.fireChannelActive();
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (!(msg instanceof NbdOption option)) {
            ReferenceCountUtil.release(msg);
            return;
        }
        if (option instanceof NbdOption.ClientFlags f) {
            fixedNewstyle = (f.flags() & NbdConstants.NBD_FLAG_C_FIXED_NEWSTYLE) != 0;
            noZeroes = (f.flags() & NbdConstants.NBD_FLAG_C_NO_ZEROES) != 0;
            return;
        }
        int code = option.code();
        ServerLog.debug("option", "conn", connectionId, "option", NbdConstants.optionName(code));
        if (!fixedNewstyle && !(option instanceof NbdOption.ExportName)) {
            hangUp(ctx, "option " + NbdConstants.optionName(code) + " from a non-fixed-newstyle client");
            return;
        }
        if (server.shuttingDown().getAsBoolean() && !(option instanceof NbdOption.Abort)) {
            if (option instanceof NbdOption.ExportName) {
                hangUp(ctx, "server shutting down");
            } else {
                error(ctx, code, NbdConstants.NBD_REP_ERR_SHUTDOWN, "server shutting down");
            }
            return;
        }
        if (server.config().tlsRequired() && !tls && !(option instanceof NbdOption.StartTls)
                && !(option instanceof NbdOption.Abort)) {
            if (option instanceof NbdOption.ExportName) {
                hangUp(ctx, "NBD_OPT_EXPORT_NAME before TLS (TLS required)");
            } else {
                error(ctx, code, NbdConstants.NBD_REP_ERR_TLS_REQD, "TLS required: start TLS first");
            }
            return;
        }
        if (option instanceof NbdOption.ExportName e) {
            exportName(ctx, e);
        } else if (option instanceof NbdOption.Abort) {
            ctx.writeAndFlush(new NbdOptionReply.Ack(code)).addListener(ChannelFutureListener.CLOSE);
        } else if (option instanceof NbdOption.ListExports) {
            for (Export e : server.exports().all()) {
                ctx.write(new NbdOptionReply.Server(code, e.name(), e.description()));
            }
            ctx.writeAndFlush(new NbdOptionReply.Ack(code));
        } else if (option instanceof NbdOption.StartTls) {
            startTls(ctx, code);
        } else if (option instanceof NbdOption.Info i) {
            info(ctx, i);
        } else if (option instanceof NbdOption.StructuredReply) {
            if (extended) {
                error(ctx, code, NbdConstants.NBD_REP_ERR_EXT_HEADER_REQD, "extended headers already negotiated");
            } else if (structured) {
                error(ctx, code, NbdConstants.NBD_REP_ERR_INVALID, "structured replies already negotiated");
            } else {
                structured = true;
                ack(ctx, code);
            }
        } else if (option instanceof NbdOption.ExtendedHeaders) {
            if (extended) {
                error(ctx, code, NbdConstants.NBD_REP_ERR_INVALID, "extended headers already negotiated");
            } else {
                extended = true;
                ack(ctx, code);
            }
        } else if (option instanceof NbdOption.MetaContext m) {
            metaContext(ctx, m);
        } else if (option instanceof NbdOption.Invalid inv) {
            if (code == NbdConstants.NBD_OPT_EXPORT_NAME) {
                hangUp(ctx, inv.reason());
            } else {
                error(ctx, code, NbdConstants.NBD_REP_ERR_INVALID, inv.reason());
            }
        } else {
            error(ctx, code, NbdConstants.NBD_REP_ERR_UNSUP, "option " + NbdConstants.optionName(code)
                    + " not supported");
        }
    }

    private void exportName(ChannelHandlerContext ctx, NbdOption.ExportName e) {
        if (extended) {
            hangUp(ctx, "NBD_OPT_EXPORT_NAME after extended headers");
            return;
        }
        Export export = server.exports().find(e.name());
        if (export == null) {
            hangUp(ctx, "NBD_OPT_EXPORT_NAME: export '" + shortName(e.name()) + "' not present");
            return;
        }
        ctx.write(new NbdOptionReply.ExportNameReply(export.device().size(), export.transmissionFlags(structured),
                noZeroes));
        enterTransmission(ctx, export);
    }

    /*
     * INFO / GO (§2.8), in QEMU 7.2's order: NAME (if asked), DESCRIPTION (if any), BLOCK_SIZE (always,
     * before EXPORT so that clients can check the size's alignment), EXPORT, then ACK.
     */
    private void info(ChannelHandlerContext ctx, NbdOption.Info i) {
        int code = i.code();
        Export export = server.exports().find(i.exportName());
        if (export == null) {
            error(ctx, code, NbdConstants.NBD_REP_ERR_UNKNOWN, "export '" + shortName(i.exportName())
                    + "' not present");
            return;
        }
        if (i.requested(NbdConstants.NBD_INFO_NAME)) {
            ctx.write(new NbdOptionReply.InfoName(code, export.name()));
        }
        if (export.description() != null) {
            ctx.write(new NbdOptionReply.InfoDescription(code, export.description()));
        }
        BlockCapabilities caps = export.device().capabilities();
        int preferred = Math.max(4096, caps.preferredBlockSize());
        int maximum = Math.min(NbdServerConfig.MAX_PAYLOAD, Math.max(preferred, caps.maximumBlockSize()));
        // Minimum 1: unaligned I/O is accepted and handled by the device (read-modify-write), as QEMU.
        ctx.write(new NbdOptionReply.InfoBlockSize(code, 1, preferred, Math.max(preferred, maximum)));
        ctx.write(new NbdOptionReply.InfoExport(code, export.device().size(),
                export.transmissionFlags(structured || extended)));
        if (!i.go()) {
            ctx.writeAndFlush(new NbdOptionReply.Ack(code));
            return;
        }
        ctx.write(new NbdOptionReply.Ack(code));
        enterTransmission(ctx, export);
    }

    private void metaContext(ChannelHandlerContext ctx, NbdOption.MetaContext m) {
        int code = m.code();
        if (m.set()) {
            contexts = null;   // a SET replaces the selection even if it fails (§2.10)
            contextsExport = null;
            if (!structured && !extended) {
                error(ctx, code, NbdConstants.NBD_REP_ERR_INVALID,
                        "set meta context before structured replies were negotiated");
                return;
            }
        }
        Export export = server.exports().find(m.exportName());
        if (export == null) {
            error(ctx, code, NbdConstants.NBD_REP_ERR_UNKNOWN, "export '" + shortName(m.exportName())
                    + "' not present");
            return;
        }
        List<MetaContext> result = m.set() ? MetaContextQuery.set(export, m.queries())
                : MetaContextQuery.list(export, m.queries());
        for (MetaContext c : result) {
            ctx.write(new NbdOptionReply.MetaContextReply(code, m.set() ? c.id() : 0, c.name()));
        }
        if (m.set()) {
            contexts = result;
            contextsExport = export.name();
        }
        ctx.writeAndFlush(new NbdOptionReply.Ack(code));
    }

    private void startTls(ChannelHandlerContext ctx, int code) {
        if (server.config().ssl() == null) {
            error(ctx, code, NbdConstants.NBD_REP_ERR_POLICY, "TLS not configured");
            return;
        }
        if (tls) {
            error(ctx, code, NbdConstants.NBD_REP_ERR_INVALID, "TLS already active");
            return;
        }
        // The ACK must leave in clear text: flush it before the SslHandler goes in front of it.
        ctx.writeAndFlush(new NbdOptionReply.Ack(code));
        SslHandler ssl = server.config().ssl().newHandler(ctx.alloc());
        ctx.pipeline().addFirst(TLS, ssl);
        ssl.handshakeFuture().addListener(f -> {
            if (f.isSuccess()) {
                ServerLog.info("tls", "conn", connectionId, "protocol", ssl.engine().getSession().getProtocol());
            } else {
                ServerLog.warn("tls-failed", "conn", connectionId, "message", f.cause().getMessage());
                ctx.close();
            }
        });
        tls = true;
        structured = false;
        extended = false;
        contexts = null;
        contextsExport = null;
    }

    private void enterTransmission(ChannelHandlerContext ctx, Export export) {
        List<MetaContext> selected = export.name().equals(contextsExport) && contexts != null ? contexts : List.of();
        NbdServerConfig c = server.config();
        boolean structuredReplies = structured || extended;
        NbdSession session = new NbdSession(connectionId, export, structuredReplies, extended, selected,
                ctx.pipeline().get(SslHandler.class) == null, export.transmissionFlags(structuredReplies),
                NbdServerConfig.MAX_PAYLOAD);
        ServerLog.info("transmission", "conn", connectionId, "export", export.name(),
                "structured", structuredReplies, "extended", extended, "contexts", selected.size(),
                "flags", "0x" + Integer.toHexString(session.transmissionFlags()), "tls", tls);
        ctx.flush();
        ChannelPipeline p = ctx.pipeline();
        p.addAfter(OPTION_DECODER, REQUEST_DECODER, new NbdRequestDecoder(extended, NbdServerConfig.MAX_PAYLOAD));
        p.addAfter(REQUEST_DECODER, REPLY_ENCODER, new NbdReplyEncoder(extended));
        // A guest's requests take turns with the other connections' in the shared pool (FairLane); a
        // backup snapshot's connection moves to a backup loop and is served there (BackupLoop).
        BackupLoop backup = export.background() ? new BackupLoop(server.backupLoops().get().next()) : null;
        Executor lane = backup != null ? backup
                : new FairLane(server.ioPool(), Math.max(1, c.ioThreads() / 2));
        p.addAfter(REPLY_ENCODER, TRANSMISSION, new NbdTransmissionHandler(session, lane, c.maxInFlight(),
                c.maxInFlightBytes()));
        if (backup != null) {
            ctx.channel().config().setAutoRead(false);   // until the channel is on its backup loop
        }
        p.remove(this);
        p.remove(OPTION_ENCODER);
        p.remove(OPTION_DECODER);   // last: its buffered bytes are forwarded to the request decoder
        if (backup != null) {
            backup.adopt(ctx.channel(), connectionId);
        }
    }

    private void ack(ChannelHandlerContext ctx, int code) {
        ctx.writeAndFlush(new NbdOptionReply.Ack(code));
    }

    private void error(ChannelHandlerContext ctx, int code, int type, String message) {
        ServerLog.debug("option-error", "conn", connectionId, "option", NbdConstants.optionName(code),
                "reply", NbdConstants.replyTypeName(type), "message", message);
        ctx.writeAndFlush(new NbdOptionReply.Error(code, type, message));
    }

    private void hangUp(ChannelHandlerContext ctx, String why) {
        ServerLog.warn("handshake-closed", "conn", connectionId, "reason", why);
        ctx.flush();
        ctx.close();
    }

    /** QEMU truncates names in messages to 80 characters. */
    private static String shortName(String name) {
        return name.length() <= 80 ? name : name.substring(0, 77) + "...";
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        Throwable c = cause instanceof NbdProtocolException ? cause : cause.getCause();
        if (c instanceof NbdProtocolException) {
            ServerLog.warn("protocol-error", "conn", connectionId, "phase", "handshake", "message", c.getMessage());
        } else {
            ServerLog.warn("connection-error", "conn", connectionId, "phase", "handshake",
                    "exception", cause.getClass().getSimpleName(), "message", cause.getMessage());
        }
        ctx.close();
    }
}
