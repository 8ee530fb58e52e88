package dev.shear.nbd.server;

import dev.shear.nbd.protocol.NbdConstants;
import dev.shear.nbd.protocol.NbdError;
import dev.shear.nbd.protocol.NbdProtocolException;
import dev.shear.nbd.protocol.NbdRequest;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.util.ReferenceCountUtil;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;

/**
 * The transmission phase of one connection (nbd-protocol.md §4-§6): decode &rarr; validate &rarr;
 * dispatch to the I/O pool; replies go out as they complete, in any order (§10).
 *
 * <p>Backpressure: a request counts as in flight from its decoding until its last reply has been
 * written to the socket. Reading stops (autoRead off) while {@code maxInFlight} requests or
 * {@code maxInFlightBytes} of data are in flight, or while the channel is not writable; so a client
 * that stops reading its replies stops being read, and memory stays bounded by
 * maxInFlightBytes + one maximum payload.
 *
 * <p>NBD_CMD_DISC (§6.3): no more requests are read, in-flight ones finish and are answered, then the
 * connection closes. Server shutdown does the same through {@link #drain}.
 *
 * <p>All fields are confined to the channel's event loop; completions hop back to it.
 */
public final class NbdTransmissionHandler extends ChannelInboundHandlerAdapter {
    private final NbdSession session;
    private final Executor ioPool;
    private final int maxInFlight;
    private final long maxInFlightBytes;
    private RequestDispatcher dispatcher;
    /** Requests accepted and not yet fully answered. Event-loop confined. */
    private int inFlight;
    /** Read lengths and write payloads of the requests in flight. Event-loop confined. */
    private long inFlightBytes;
    /** DISC received or server draining: read nothing more, close when idle. Event-loop confined. */
    private boolean closing;

    public NbdTransmissionHandler(NbdSession session, Executor ioPool, int maxInFlight, long maxInFlightBytes) {
        this.session = session;
        this.ioPool = ioPool;
        this.maxInFlight = maxInFlight;
        this.maxInFlightBytes = maxInFlightBytes;
    }

    public NbdSession session() {
        return session;
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
        dispatcher = new RequestDispatcher(ctx.channel(), session);
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (closing) {
            ReferenceCountUtil.release(msg);   // nothing may follow DISC (§6.3)
            return;
        }
        if (!(msg instanceof NbdRequest request)) {
            ctx.fireChannelRead(msg);
            return;
        }
        // From here this method owns the request until it hands it to the I/O task, which releases
        // it; on the paths that answer here, it is released once the reply is built (NbdPooledMessage).
        if (request.type() == NbdConstants.NBD_CMD_DISC) {
            ServerLog.debug("disc", "conn", session.connectionId());
            request.release();
            drain(ctx);
            return;
        }
        NbdError error = RequestValidator.validate(request, session.export().device().size(),
                session.transmissionFlags(), !session.contexts().isEmpty(), session.maxPayload());
        if (error != null) {
            ServerLog.debug("request-invalid", "conn", session.connectionId(), "request", request, "error", error);
            begin(ctx, 0);
            try {
                complete(ctx, dispatcher.error(request, error, message(request, error)), 0, 0);
            } finally {
                request.release();
            }
            return;
        }
        final long bytes = request.type() == NbdConstants.NBD_CMD_READ || request.hasPayload() ? request.length() : 0;
        begin(ctx, bytes);
        final long decodedAt = System.nanoTime();
        try {
            ioPool.execute(() -> {
                NbdMetrics.QUEUE.record(System.nanoTime() - decodedAt);
                ChannelFuture lastWrite = dispatcher.execute(request);
                complete(ctx, lastWrite, bytes, System.nanoTime());
            });
        } catch (RejectedExecutionException e) {
            // The pool is shut down: the server is stopping. The request was not handed off.
            try {
                complete(ctx, dispatcher.error(request, NbdError.ESHUTDOWN, "server shutting down"), bytes, 0);
            } finally {
                request.release();
            }
        }
    }

    private static String message(NbdRequest r, NbdError e) {
        return NbdConstants.commandName(r.type()) + ": " + e.name() + " (offset " + Long.toUnsignedString(r.offset())
                + ", length " + Long.toUnsignedString(r.length()) + ")";
    }

    private void begin(ChannelHandlerContext ctx, long bytes) {
        inFlight++;
        inFlightBytes += bytes;
        updateAutoRead(ctx);
    }

    /**
     * Called from any thread when the last reply of a request was handed to the channel.
     *
     * @param executedAt when the request's execution on the I/O pool ended ({@link System#nanoTime}), or 0
     *                   for a request answered without it: the reply hand-off is measured from there
     */
    private void complete(ChannelHandlerContext ctx, ChannelFuture lastWrite, long bytes, long executedAt) {
        ChannelFutureListener done = f -> {
            if (executedAt != 0) {
                NbdMetrics.REPLY.record(System.nanoTime() - executedAt);
            }
            inFlight--;
            inFlightBytes -= bytes;
            if (closing && inFlight == 0) {
                closeAfterFlush(ctx);
            } else {
                updateAutoRead(ctx);
            }
        };
        if (lastWrite == null) {
            ctx.executor().execute(() -> {
                try {
                    done.operationComplete(ctx.newSucceededFuture());
                } catch (Exception e) {
                    ctx.fireExceptionCaught(e);
                }
            });
        } else {
            lastWrite.addListener(done);
        }
    }

    private void updateAutoRead(ChannelHandlerContext ctx) {
        boolean read = !closing && inFlight < maxInFlight && inFlightBytes < maxInFlightBytes
                && ctx.channel().isWritable();
        if (ctx.channel().config().isAutoRead() != read) {
            ctx.channel().config().setAutoRead(read);
            if (read) {
                ctx.read();
            }
        }
    }

    /**
     * Stops reading; closes once every request in flight has been answered. Must run on the event loop.
     */
    public void drain(ChannelHandlerContext ctx) {
        closing = true;
        ctx.channel().config().setAutoRead(false);
        if (inFlight == 0) {
            closeAfterFlush(ctx);
        }
    }

    private static void closeAfterFlush(ChannelHandlerContext ctx) {
        ctx.writeAndFlush(Unpooled.EMPTY_BUFFER).addListener(ChannelFutureListener.CLOSE);
    }

    @Override
    public void channelWritabilityChanged(ChannelHandlerContext ctx) {
        if (!closing) {
            updateAutoRead(ctx);
        }
        ctx.fireChannelWritabilityChanged();
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        if (cause instanceof NbdProtocolException || cause.getCause() instanceof NbdProtocolException) {
            ServerLog.warn("protocol-error", "conn", session.connectionId(), "message", cause.getMessage());
        } else {
            ServerLog.warn("connection-error", "conn", session.connectionId(),
                    "exception", cause.getClass().getSimpleName(), "message", cause.getMessage());
        }
        // Framing is lost: answer nothing more, but let replies already queued go out first.
        closing = true;
        ctx.channel().config().setAutoRead(false);
        closeAfterFlush(ctx);
    }
}
