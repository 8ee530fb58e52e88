package dev.shear.nbd.protocol;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.ByteToMessageDecoder;
import java.util.List;

/**
 * Decodes transmission-phase requests (nbd-protocol.md §4) into pooled {@link NbdRequest}s, a WRITE
 * with its payload. Only framing errors are fatal; everything else is judged later by the server's
 * request validator so that the connection survives a bad request.
 *
 * <pre>
 * compact (28 bytes)                          extended (32 bytes, after NBD_OPT_EXTENDED_HEADERS)
 *   0  4  magic 0x25609513                      0  4  magic 0x21e41c71
 *   4  2  command flags                         4  2  command flags
 *   6  2  command type                          6  2  command type
 *   8  8  cookie                                8  8  cookie
 *  16  8  offset                               16  8  offset
 *  24  4  length                               24  8  length (payload length if PAYLOAD_LEN)
 *  28  *  payload (WRITE only)                 32  *  payload (WRITE, or any command with PAYLOAD_LEN)
 * </pre>
 *
 * <p>Bounds: a payload is buffered whole only up to {@code maxPayload} (so the cumulation never
 * exceeds header + maxPayload). A larger WRITE is emitted already rejected with EINVAL and its payload
 * is skipped as it arrives, up to {@link #skipLimit}; beyond that the peer is hung up on (nbdkit
 * skip_over_write_buffer; QEMU hangs up on any write above 32 MiB). In extended mode a payload on a
 * command other than WRITE is skipped the same way and the command fails with EINVAL (§4.2), since
 * this server does not advertise NBD_FLAG_BLOCK_STATUS_PAYLOAD.
 *
 * <p>Allocation: none per request. The request comes from a recycler, and a WRITE's payload that is
 * already whole in the cumulation buffer stays there: the request takes one reference of it instead
 * of a retained slice (a slice of an adaptive-allocator buffer is a new object each time). JMH:
 * NbdFramingBenchmark.
 *
 * <p>Copies: a WRITE whose payload has not all arrived with its header gets a pooled buffer of the
 * payload's size at once (bounded by {@code maxPayload}), and every later byte is copied into it
 * exactly once as it arrives. Waiting in the cumulation instead would copy the growing payload at
 * every expansion (quadratic in the number of reads) and re-parse the header on every read.
 */
public final class NbdRequestDecoder extends ByteToMessageDecoder {
    private final boolean extended;
    private final int maxPayload;
    private final long skipLimit;
    /** Payload bytes of a rejected request still to discard. Event-loop confined. */
    private long skipRemaining;
    /** A fatal error was thrown: everything after it is discarded. Event-loop confined. */
    private boolean failed;
    /** The WRITE whose payload is arriving into {@link #payloadBuf}, or null. Event-loop confined. */
    private NbdRequest pending;
    /** The pending WRITE's payload buffer (its writer index is how much has arrived). */
    private ByteBuf payloadBuf;

    /**
     * @param extended   expect 32-byte extended headers (and only those)
     * @param maxPayload largest payload buffered, 32 MiB in practice
     */
    public NbdRequestDecoder(boolean extended, int maxPayload) {
        this.extended = extended;
        this.maxPayload = maxPayload;
        this.skipLimit = 2L * maxPayload;
    }

    public int headerLength() {
        return extended ? NbdConstants.EXTENDED_REQUEST_HEADER_LENGTH : NbdConstants.REQUEST_HEADER_LENGTH;
    }

    @Override
    protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
        if (failed) {
            in.skipBytes(in.readableBytes());   // framing is lost: discard until the handler closes
            return;
        }
        if (pending != null) {
            int n = Math.min(payloadBuf.writableBytes(), in.readableBytes());
            payloadBuf.writeBytes(in, n);
            if (payloadBuf.isWritable()) {
                return;
            }
            out.add(pending);
            pending = null;
            payloadBuf = null;
            return;
        }
        if (skipRemaining > 0) {
            int n = (int) Math.min(skipRemaining, in.readableBytes());
            in.skipBytes(n);
            skipRemaining -= n;
            if (skipRemaining > 0) {
                return;
            }
        }
        int headerLength = headerLength();
        if (in.readableBytes() < headerLength) {
            return;
        }
        int start = in.readerIndex();
        int magic = in.getInt(start);
        int expectedMagic = extended ? NbdConstants.NBD_EXTENDED_REQUEST_MAGIC : NbdConstants.NBD_REQUEST_MAGIC;
        if (magic != expectedMagic) {
            failed = true;
            throw NbdProtocolException.fatal("request magic: 0x%08x (expected: 0x%08x)", magic, expectedMagic);
        }
        int flags = in.getUnsignedShort(start + 4);
        int type = in.getUnsignedShort(start + 6);
        long cookie = in.getLong(start + 8);
        long offset = in.getLong(start + 16);
        long length = extended ? in.getLong(start + 24) : in.getUnsignedInt(start + 24);

        long payload = payloadLength(type, flags, length);
        if (payload == 0) {
            in.skipBytes(headerLength);
            out.add(NbdRequest.newInstance(flags, type, cookie, offset, length, extended, null));
            return;
        }
        boolean write = type == NbdConstants.NBD_CMD_WRITE;
        // Unsigned compare: a 64-bit length >= 2^63 is negative here and must count as huge.
        if (!write || Long.compareUnsigned(payload, maxPayload) > 0) {
            if (Long.compareUnsigned(payload, skipLimit) > 0) {
                failed = true;
                throw NbdProtocolException.fatal("%s payload length: %s (expected: <= %d)",
                        NbdConstants.commandName(type), Long.toUnsignedString(payload),
                        write ? maxPayload : skipLimit);
            }
            in.skipBytes(headerLength);
            skipRemaining = payload;
            out.add(NbdRequest.newInstance(flags, type, cookie, offset, length, extended, NbdError.EINVAL));
            return;
        }
        int n = (int) payload;
        if (in.readableBytes() < headerLength + n) {
            // The rest arrives later: copy it once into a buffer of its own (bounded by maxPayload above).
            in.skipBytes(headerLength);
            ByteBuf buf = ctx.alloc().directBuffer(n, n);
            buf.writeBytes(in);
            this.payloadBuf = buf;
            this.pending = NbdRequest.newInstance(flags, type, cookie, offset, length, extended, buf, 0, n);
            return;
        }
        int payloadIndex = start + headerLength;
        in.skipBytes(headerLength + (int) payload);
        // One reference of the cumulation moves to the request here; the I/O task releases it.
        out.add(NbdRequest.newInstance(flags, type, cookie, offset, length, extended, in.retain(), payloadIndex,
                (int) payload));
    }

    /** Releases a partly received WRITE when the channel goes away. */
    @Override
    protected void handlerRemoved0(ChannelHandlerContext ctx) {
        if (pending != null) {
            NbdRequest r = pending;
            pending = null;
            payloadBuf = null;
            r.release();
        }
    }

    /**
     * How many payload bytes follow the header: a compact WRITE carries {@code length} bytes; in
     * extended mode a request carries {@code length} bytes when PAYLOAD_LEN is set, and a WRITE
     * without the flag still does (QEMU tolerates the omission the same way).
     */
    private long payloadLength(int type, int flags, long length) {
        if (type == NbdConstants.NBD_CMD_WRITE) {
            return length;
        }
        return extended && (flags & NbdConstants.NBD_CMD_FLAG_PAYLOAD_LEN) != 0 ? length : 0;
    }
}
