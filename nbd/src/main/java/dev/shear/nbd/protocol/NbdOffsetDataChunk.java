package dev.shear.nbd.protocol;

import io.netty.util.Recycler;
import io.netty.util.ReferenceCounted;
import java.util.List;

/**
 * NBD_REPLY_TYPE_OFFSET_DATA (nbd-protocol.md §5.5): payload = 8-byte offset, then the data, which
 * may be several parts (a DF read mixing file data and zeros still is one chunk). Pooled
 * ({@link NbdPooledMessage}).
 */
public final class NbdOffsetDataChunk extends NbdPayloadReply implements NbdReply {
    private static final Recycler<NbdOffsetDataChunk> RECYCLER = recycler(NbdOffsetDataChunk::new);

    private long offset;
    private boolean done;

    private NbdOffsetDataChunk(Recycler.Handle<NbdOffsetDataChunk> handle) {
        super(handle);
    }

    private static NbdOffsetDataChunk header(long cookie, long requestOffset, long offset, boolean done) {
        NbdOffsetDataChunk c = RECYCLER.get();
        c.reuse();
        c.echo(cookie, requestOffset);
        c.offset = offset;
        c.done = done;
        return c;
    }

    /** A chunk of one part (ByteBuf or FileRegion), whose ownership it takes unless it throws. */
    public static NbdOffsetDataChunk newInstance(long cookie, long requestOffset, long offset, ReferenceCounted data,
            boolean done) {
        long length = checkNotEmpty(dataLength(data));
        NbdOffsetDataChunk c = header(cookie, requestOffset, offset, done);
        c.takePart(data, length);
        return c;
    }

    /** A chunk of several parts, whose ownership it takes unless it throws. */
    public static NbdOffsetDataChunk newInstance(long cookie, long requestOffset, long offset,
            List<? extends ReferenceCounted> data, boolean done) {
        long length = checkNotEmpty(dataLength(data));
        NbdOffsetDataChunk c = header(cookie, requestOffset, offset, done);
        c.takeParts(data, length);
        return c;
    }

    private static long checkNotEmpty(long length) {
        if (length < 1) {
            throw new IllegalArgumentException("OFFSET_DATA length: " + length + " (expected: >= 1)");
        }
        return length;
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
        return "NbdOffsetDataChunk(cookie=0x" + Long.toHexString(cookie()) + ", offset=0x"
                + Long.toHexString(offset) + ", length=" + dataLength() + ", done=" + done + ")";
    }
}
