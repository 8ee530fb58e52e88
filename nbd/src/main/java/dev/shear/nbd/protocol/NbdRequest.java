package dev.shear.nbd.protocol;

import io.netty.buffer.ByteBuf;
import io.netty.util.Recycler;
import java.nio.ByteBuffer;

/**
 * One transmission-phase request (nbd-protocol.md §4.1, §4.2), decoded but not validated, with the
 * payload of an accepted WRITE. Pooled ({@link NbdPooledMessage}): get one with {@link #newInstance},
 * and let its last user release it, which also releases the payload.
 *
 * <p>Fields:
 * <ul>
 *   <li>{@code flags}: command flags (16 bits); {@code type}: command type (16 bits, unknown values
 *       are kept); {@code cookie}: opaque, echoed byte for byte in every reply;</li>
 *   <li>{@code offset}: guest offset as sent, an unsigned 64-bit value (negative here means
 *       &ge; 2^63); {@code length}: effect length, unsigned, 32 bits in compact headers and 64 bits in
 *       extended ones (for a WRITE the payload length);</li>
 *   <li>{@code extended}: the request came with the 32-byte extended header;</li>
 *   <li>{@code rejected}: null, or the error the decoder already decided (an oversized WRITE whose
 *       payload is being skipped, a payload on a command that takes none).</li>
 * </ul>
 *
 * <p>Payload (style.md §4 rule 2): the bytes stay where they arrived, in the decoder's cumulation
 * buffer, of which the request holds one reference; {@code [payloadIndex, payloadIndex +
 * payloadLength)} is the payload. That is what a retained slice is, minus the slice object. The
 * cumulation is not compacted or written over below its writer index while that reference is held
 * (ByteToMessageDecoder only discards or reallocates a cumulation it holds alone).
 */
public final class NbdRequest extends NbdPooledMessage {
    private static final Recycler<NbdRequest> RECYCLER = recycler(NbdRequest::new);

    private int flags;
    private int type;
    private long cookie;
    private long offset;
    private long length;
    private boolean extended;
    private NbdError rejected;
    /** Holds the payload (one reference owned by this request), or null. */
    private ByteBuf payloadBuffer;
    private int payloadIndex;
    private int payloadLength;

    private NbdRequest(Recycler.Handle<NbdRequest> handle) {
        super(handle);
    }

    /** A request without payload. */
    public static NbdRequest newInstance(int flags, int type, long cookie, long offset, long length,
            boolean extended, NbdError rejected) {
        NbdRequest r = RECYCLER.get();
        r.reuse();
        r.flags = flags;
        r.type = type;
        r.cookie = cookie;
        r.offset = offset;
        r.length = length;
        r.extended = extended;
        r.rejected = rejected;
        return r;
    }

    /**
     * A request with the payload {@code [index, index + payloadLength)} of {@code buffer}.
     * On entry the caller owns one reference of {@code buffer} for the request; on exit the request owns it.
     */
    static NbdRequest newInstance(int flags, int type, long cookie, long offset, long length, boolean extended,
            ByteBuf buffer, int index, int payloadLength) {
        NbdRequest r = newInstance(flags, type, cookie, offset, length, extended, null);
        r.payloadBuffer = buffer;
        r.payloadIndex = index;
        r.payloadLength = payloadLength;
        return r;
    }

    public int flags() {
        return flags;
    }

    public int type() {
        return type;
    }

    public long cookie() {
        return cookie;
    }

    public long offset() {
        return offset;
    }

    public long length() {
        return length;
    }

    public boolean extended() {
        return extended;
    }

    /** Null, or the error the decoder decided. */
    public NbdError rejected() {
        return rejected;
    }

    public boolean hasFlag(int flag) {
        return (flags & flag) != 0;
    }

    /** An accepted WRITE with at least one payload byte. */
    public boolean hasPayload() {
        return payloadBuffer != null;
    }

    /** Payload bytes, 0 without payload. */
    public int payloadLength() {
        return payloadLength;
    }

    /**
     * The payload as a new NIO view (for the device), valid until this request is released. Safe on any
     * thread: the view is not shared with the buffer.
     */
    public ByteBuffer payloadNioBuffer() {
        return payloadBuffer.nioBuffer(payloadIndex, payloadLength);
    }

    /** The payload as a new unretained ByteBuf view, valid until this request is released; for inspection. */
    public ByteBuf payload() {
        return payloadBuffer.slice(payloadIndex, payloadLength);
    }

    @Override
    protected void clear() {
        ByteBuf b = payloadBuffer;
        payloadBuffer = null;
        payloadIndex = 0;
        payloadLength = 0;
        rejected = null;
        if (b != null) {
            b.release();
        }
    }

    @Override
    public NbdRequest touch(Object hint) {
        if (payloadBuffer != null) {
            payloadBuffer.touch(hint);
        }
        return this;
    }

    /** {@code cmd=READ cookie=0x... offset=0x... length=...} for logs. */
    @Override
    public String toString() {
        return "cmd=" + NbdConstants.commandName(type) + " cookie=0x" + Long.toHexString(cookie)
                + " offset=0x" + Long.toHexString(offset) + " length=" + Long.toUnsignedString(length)
                + " flags=0x" + Integer.toHexString(flags);
    }
}
