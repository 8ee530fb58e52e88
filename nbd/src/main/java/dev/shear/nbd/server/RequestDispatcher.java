package dev.shear.nbd.server;

import dev.shear.block.BlockDevice;
import dev.shear.block.BlockException;
import dev.shear.block.FileSpan;
import dev.shear.block.ReadSegment;
import dev.shear.block.WriteFlags;
import dev.shear.nbd.protocol.NbdConstants;
import dev.shear.nbd.protocol.NbdError;
import dev.shear.nbd.protocol.NbdOffsetDataChunk;
import dev.shear.nbd.protocol.NbdReply;
import dev.shear.nbd.protocol.NbdRequest;
import dev.shear.nbd.protocol.NbdSimpleReply;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelPromise;
import io.netty.channel.DefaultFileRegion;
import io.netty.channel.EventLoop;
import io.netty.channel.epoll.EpollChannelOption;
import io.netty.channel.epoll.EpollSocketChannel;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.ReferenceCounted;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.RejectedExecutionException;

/**
 * Runs one validated request against the device and writes its replies (nbd-protocol.md §5, §6).
 * Called on the bounded I/O pool, never on an event loop: every device call may block on disk.
 *
 * <p>Reply forms: with extended headers every reply is a chunk (NONE/DONE for plain success);
 * with structured replies READ and BLOCK_STATUS always get chunks and the rest simple replies (as
 * QEMU); otherwise simple replies. Each chunk is one message, so chunks never interleave bytes on
 * the socket; the chunks of one reply are written in order from this one thread.
 *
 * <p>Ownership (style.md §4): read buffers are allocated here with {@code alloc().ioBuffer()}, and
 * FileSpans become {@link NonClosingFileRegion}s; each goes into a reply message, which then owns it.
 * Parts built for a reply that is abandoned (device error) are released here before the error reply.
 */
final class RequestDispatcher {
    /** -Dshear.nbd.cork=false turns corking off (for measurements). */
    private static final boolean CORK = Boolean.parseBoolean(System.getProperty("shear.nbd.cork", "true"));

    private final Channel channel;
    private final NbdSession session;

    /** TCP over epoll: cork the socket around each batch of replies. */
    private final boolean cork;
    /** A cork is set and its removal queued. Event-loop confined. */
    private boolean corked;

    RequestDispatcher(Channel channel, NbdSession session) {
        this.channel = channel;
        this.session = session;
        this.cork = channel instanceof EpollSocketChannel && CORK;
    }


    /**
     * Runs the request and releases it (with its payload) in every case, after its replies were built:
     * it is pooled, so nothing may read it afterwards (the replies copy cookie and offset).
     *
     * @return the future of the last reply written
     */
    ChannelFuture execute(NbdRequest r) {
        long startNanos = System.nanoTime();
        try {
            BlockDevice device = session.export().device();
            switch (r.type()) {
                case NbdConstants.NBD_CMD_READ -> {
                    return read(device, r);
                }
                case NbdConstants.NBD_CMD_WRITE -> {
                    if (r.hasPayload()) {
                        device.write(r.offset(), r.payloadNioBuffer(), writeFlags(r));
                    } else if (r.hasFlag(NbdConstants.NBD_CMD_FLAG_FUA)) {
                        device.flush();
                    }
                }
                case NbdConstants.NBD_CMD_WRITE_ZEROES -> {
                    if (r.length() > 0) {
                        device.writeZeroes(r.offset(), r.length(), writeFlags(r));
                    }
                }
                case NbdConstants.NBD_CMD_TRIM -> {
                    if (r.length() > 0) {
                        device.discard(r.offset(), r.length(), writeFlags(r));
                    }
                    if (r.hasFlag(NbdConstants.NBD_CMD_FLAG_FUA)) {
                        device.flush();
                    }
                }
                case NbdConstants.NBD_CMD_FLUSH -> device.flush();
                case NbdConstants.NBD_CMD_CACHE -> {
                    // A prefetch hint; answering success without prefetching is allowed (§6.6).
                }
                case NbdConstants.NBD_CMD_BLOCK_STATUS -> {
                    List<NbdReply> chunks = BlockStatusBuilder.build(r.cookie(), session.export(),
                            session.contexts(), r.offset(), r.length(),
                            r.hasFlag(NbdConstants.NBD_CMD_FLAG_REQ_ONE));
                    return send(chunks);
                }
                default -> throw new IllegalStateException("unvalidated command: " + r);
            }
            return success(r);
        } catch (BlockException e) {
            NbdError error = NbdErrors.toWire(e.kind(), r.type(), r.flags());
            ServerLog.warn("request-error", "conn", session.connectionId(), "request", r, "error", error,
                    "kind", e.kind(), "message", e.getMessage());
            return error(r, error, e.detail());
        } catch (IOException | RuntimeException e) {
            // Programming errors and unclassified I/O: log with the cause, answer EIO, keep serving.
            ServerLog.error("request-failure", "conn", session.connectionId(), "request", r,
                    "exception", e.getClass().getName(), "message", e.getMessage());
            if (e instanceof RuntimeException) {
                e.printStackTrace();
            }
            return error(r, NbdError.EIO, "internal error");
        } finally {
            boolean moves = r.type() == NbdConstants.NBD_CMD_READ || r.type() == NbdConstants.NBD_CMD_WRITE;
            NbdMetrics.record(r.type(), moves ? r.length() : 0, System.nanoTime() - startNanos);
            r.release();   // last use
        }
    }

    /** A reply for a request that failed validation or the device; the caller keeps and releases {@code r}. */
    ChannelFuture error(NbdRequest r, NbdError error, String message) {
        if (session.extended() || session.structured() && needsChunks(r.type())) {
            return send(new NbdReply.ErrorChunk(r.cookie(), r.offset(), error,
                    message == null ? error.name() : message, true));
        }
        return send(NbdSimpleReply.newInstance(r.cookie(), error));
    }

    private ChannelFuture success(NbdRequest r) {
        if (session.extended() || session.structured() && needsChunks(r.type())) {
            return send(NbdReply.DoneChunk.newInstance(r.cookie(), r.offset()));
        }
        return send(NbdSimpleReply.newInstance(r.cookie(), null));
    }

    private static boolean needsChunks(int type) {
        return type == NbdConstants.NBD_CMD_READ || type == NbdConstants.NBD_CMD_BLOCK_STATUS;
    }

    private static int writeFlags(NbdRequest r) {
        int f = WriteFlags.NONE;
        if (r.hasFlag(NbdConstants.NBD_CMD_FLAG_FUA)) {
            f |= WriteFlags.FUA;
        }
        if (r.hasFlag(NbdConstants.NBD_CMD_FLAG_NO_HOLE)) {
            f |= WriteFlags.NO_HOLE;
        }
        if (r.hasFlag(NbdConstants.NBD_CMD_FLAG_FAST_ZERO)) {
            f |= WriteFlags.FAST_ZERO;
        }
        return f;
    }

    /*
     * READ (§6.1). Segments from readSegments become, in order:
     *   FileSpan  -> OFFSET_DATA with a FileRegion (sendfile) when zero-copy is allowed, else a copy;
     *   Zeros     -> OFFSET_HOLE (structured, not DF) or zero bytes;
     *   Copy      -> OFFSET_DATA with a pooled direct buffer filled by device.read.
     * Without structured replies, or with DF, all parts go in one message (one chunk / one simple reply).
     */
    private ChannelFuture read(BlockDevice device, NbdRequest r) throws IOException {
        boolean structured = session.structured();
        if (r.length() == 0) {
            return structured ? send(NbdReply.DoneChunk.newInstance(r.cookie(), r.offset()))
                    : send(NbdSimpleReply.newInstance(r.cookie(), null));
        }
        if (r.hasFlag(NbdConstants.NBD_CMD_FLAG_FUA)) {
            device.flush();   // QEMU flushes for FUA on READ
        }
        List<ReadSegment> segments = new ArrayList<>(4);
        device.readSegments(r.offset(), r.length(), segments::add);
        boolean oneMessage = !structured || r.hasFlag(NbdConstants.NBD_CMD_FLAG_DF);
        if (oneMessage) {
            List<ReferenceCounted> parts = new ArrayList<>(segments.size());
            NbdReply reply;
            try {
                long guestOffset = r.offset();
                for (ReadSegment s : segments) {
                    parts.add(materialize(device, s, guestOffset));
                    guestOffset += s.length();
                }
                reply = structured ? NbdOffsetDataChunk.newInstance(r.cookie(), r.offset(), r.offset(), parts, true)
                        : NbdSimpleReply.newReadInstance(r.cookie(), parts);
            } catch (IOException | RuntimeException e) {
                releaseAll(parts);
                throw e;
            }
            return send(reply);
        }
        List<NbdReply> chunks = new ArrayList<>(segments.size());
        long guestOffset = r.offset();
        for (int i = 0; i < segments.size(); i++) {
            ReadSegment s = segments.get(i);
            boolean done = i == segments.size() - 1;
            NbdReply chunk;
            if (s instanceof ReadSegment.Zeros) {
                chunk = NbdReply.OffsetHoleChunk.newInstance(r.cookie(), r.offset(), guestOffset, (int) s.length(),
                        done);
            } else {
                ReferenceCounted part;
                try {
                    part = materialize(device, s, guestOffset);
                } catch (BlockException e) {
                    // Earlier chunks are out; say where the read failed and end the reply (§5.4).
                    NbdError error = NbdErrors.toWire(e.kind(), r.type(), r.flags());
                    ServerLog.warn("request-error", "conn", session.connectionId(), "request", r,
                            "error", error, "kind", e.kind(), "message", e.getMessage());
                    chunks.add(new NbdReply.ErrorChunk(r.cookie(), r.offset(), error, e.detail(), true));
                    return send(chunks);
                } catch (IOException | RuntimeException e) {
                    releaseAll(chunks);
                    throw e;
                }
                chunk = NbdOffsetDataChunk.newInstance(r.cookie(), r.offset(), guestOffset, part, done);
            }
            chunks.add(chunk);
            guestOffset += s.length();
        }
        return send(chunks);
    }

    /** Sends one reply message: see {@link #send(List)}. */
    private ChannelFuture send(NbdReply reply) {
        return send(List.of(reply));
    }

    /**
     * Writes the chunks of one reply in order and flushes once, in a single event-loop task: one
     * cross-thread hand-off and one flush per reply instead of one per chunk. On TCP the socket is
     * corked for the rest of the event loop's current batch of tasks ({@link #corkForBatch}), so that
     * chunk headers and their sendfile data, and the replies completed meanwhile, leave in full segments.
     *
     * @return the future of the last chunk's write
     */
    private ChannelFuture send(List<NbdReply> chunks) {
        EventLoop loop = channel.eventLoop();
        ChannelPromise last = channel.newPromise();
        Runnable task = () -> {
            corkForBatch();
            int n = chunks.size();
            for (int i = 0; i < n - 1; i++) {
                channel.write(chunks.get(i), channel.voidPromise());
            }
            channel.writeAndFlush(chunks.get(n - 1), last);
        };
        if (loop.inEventLoop()) {
            task.run();
        } else {
            try {
                loop.execute(task);
            } catch (RejectedExecutionException e) {
                releaseAll(chunks);   // the loop is gone: so is the channel
                last.setFailure(e);
            }
        }
        return last;
    }

    /**
     * TCP only: sets TCP_CORK and queues its removal behind the tasks already queued on the event loop,
     * i.e. the replies completed so far. Event-loop confined; a no-op on Unix sockets and NIO.
     */
    private void corkForBatch() {
        if (!cork || corked) {
            return;
        }
        if (!channel.isActive() || !channel.config().setOption(EpollChannelOption.TCP_CORK, true)) {
            return;
        }
        corked = true;
        channel.eventLoop().execute(() -> {
            corked = false;
            if (channel.isOpen()) {
                channel.config().setOption(EpollChannelOption.TCP_CORK, false);
            }
        });
    }

    /** One segment as a ByteBuf or FileRegion owned by the caller. */
    private ReferenceCounted materialize(BlockDevice device, ReadSegment s, long guestOffset) throws IOException {
        if (s instanceof FileSpan f && session.zeroCopy()) {
            return new NonClosingFileRegion(f);
        }
        int n = Math.toIntExact(s.length());
        ByteBuf buf = channel.alloc().ioBuffer(n);
        try {
            if (s instanceof ReadSegment.Zeros) {
                buf.writeZero(n);
            } else {
                device.read(guestOffset, buf.nioBuffer(buf.writerIndex(), n));
                buf.writerIndex(buf.writerIndex() + n);
            }
            return buf;
        } catch (IOException | RuntimeException e) {
            buf.release();
            throw e;
        }
    }

    private static void releaseAll(List<?> parts) {
        for (Object p : parts) {
            ReferenceCountUtil.release(p);
        }
    }

    /**
     * A sendfile region over a device's channel. Netty's {@link DefaultFileRegion} closes its file when
     * released; the device owns this channel and keeps it open, so deallocation must not close it.
     * Still a DefaultFileRegion, so that the epoll transport uses native sendfile.
     */
    static final class NonClosingFileRegion extends DefaultFileRegion {
        NonClosingFileRegion(FileSpan span) {
            super(span.channel(), span.position(), span.length());
        }

        @Override
        protected void deallocate() {
            // The device owns the FileChannel: nothing to close.
        }
    }

}
