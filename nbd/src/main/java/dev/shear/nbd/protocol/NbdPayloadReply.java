package dev.shear.nbd.protocol;

import io.netty.buffer.ByteBuf;
import io.netty.channel.FileRegion;
import io.netty.util.AbstractReferenceCounted;
import io.netty.util.ReferenceCounted;
import java.util.List;

/**
 * Base of the replies that carry read data: an ordered list of parts, each a {@link ByteBuf} or a
 * {@link FileRegion}, that together are the data. The message owns its parts (style.md §4 rule 4):
 * releasing the message releases each part once. The encoder retains the parts it forwards.
 */
public abstract sealed class NbdPayloadReply extends AbstractReferenceCounted permits NbdSimpleReply,
        NbdOffsetDataChunk {
    private final List<ReferenceCounted> parts;
    private final long dataLength;

    protected NbdPayloadReply(List<ReferenceCounted> parts) {
        long total = 0;
        for (ReferenceCounted p : parts) {
            if (p instanceof ByteBuf b) {
                total += b.readableBytes();
            } else if (p instanceof FileRegion r) {
                total += r.count() - r.transferred();
            } else {
                throw new IllegalArgumentException("payload part: " + p.getClass().getName()
                        + " (expected: ByteBuf or FileRegion)");
            }
        }
        this.parts = List.copyOf(parts);
        this.dataLength = total;
    }

    /** The data, in order. */
    public List<ReferenceCounted> parts() {
        return parts;
    }

    /** Total bytes of data in the parts. */
    public long dataLength() {
        return dataLength;
    }

    @Override
    protected void deallocate() {
        for (ReferenceCounted p : parts) {
            p.release();
        }
    }

    @Override
    public ReferenceCounted touch(Object hint) {
        for (ReferenceCounted p : parts) {
            p.touch(hint);
        }
        return this;
    }
}
