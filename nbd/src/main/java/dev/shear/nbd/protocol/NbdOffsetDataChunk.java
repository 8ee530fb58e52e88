package dev.shear.nbd.protocol;

import io.netty.util.ReferenceCounted;
import java.util.List;

/**
 * NBD_REPLY_TYPE_OFFSET_DATA (nbd-protocol.md §5.5): payload = 8-byte offset, then the data, which
 * may be several parts (a DF read mixing file data and zeros still is one chunk).
 */
public final class NbdOffsetDataChunk extends NbdPayloadReply implements NbdReply {
    private final long cookie;
    private final long requestOffset;
    private final long offset;
    private final boolean done;

    public NbdOffsetDataChunk(long cookie, long requestOffset, long offset, List<ReferenceCounted> data,
            boolean done) {
        super(data);
        if (dataLength() < 1) {
            throw new IllegalArgumentException("OFFSET_DATA length: 0 (expected: >= 1)");
        }
        this.cookie = cookie;
        this.requestOffset = requestOffset;
        this.offset = offset;
        this.done = done;
    }

    @Override
    public long cookie() {
        return cookie;
    }

    @Override
    public long requestOffset() {
        return requestOffset;
    }

    /** Guest offset of the first data byte. */
    public long offset() {
        return offset;
    }

    public boolean done() {
        return done;
    }

    @Override
    public String toString() {
        return "NbdOffsetDataChunk(cookie=0x" + Long.toHexString(cookie) + ", offset=0x"
                + Long.toHexString(offset) + ", length=" + dataLength() + ", done=" + done + ")";
    }
}
