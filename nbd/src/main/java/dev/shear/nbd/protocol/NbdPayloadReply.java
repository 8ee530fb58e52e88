package dev.shear.nbd.protocol;

import io.netty.buffer.ByteBuf;
import io.netty.channel.FileRegion;
import io.netty.util.Recycler;
import io.netty.util.ReferenceCounted;
import java.util.ArrayList;
import java.util.List;

/**
 * Base of the replies that carry read data: an ordered list of parts, each a {@link ByteBuf} or a
 * {@link FileRegion}, that together are the data. The message owns its parts (style.md §4 rule 4):
 * releasing the message releases each part once. The encoder retains the parts it forwards.
 * Pooled ({@link NbdPooledMessage}); the part list is kept across uses, so a reply of a few parts
 * allocates nothing.
 */
public abstract sealed class NbdPayloadReply extends NbdPooledReply permits NbdSimpleReply,
        NbdOffsetDataChunk {
    /** A list that grew past this is dropped on recycle, so that pooled instances stay small. */
    private static final int KEPT_PART_CAPACITY = 16;

    private ArrayList<ReferenceCounted> parts = new ArrayList<>(4);
    private long dataLength;

    NbdPayloadReply(Recycler.Handle<? extends NbdPayloadReply> handle) {
        super(handle);
    }

    /** Data bytes of a part; throws IllegalArgumentException unless it is a ByteBuf or FileRegion. */
    static long dataLength(ReferenceCounted part) {
        if (part instanceof ByteBuf b) {
            return b.readableBytes();
        }
        if (part instanceof FileRegion r) {
            return r.count() - r.transferred();
        }
        throw new IllegalArgumentException("payload part: " + (part == null ? "null" : part.getClass().getName())
                + " (expected: ByteBuf or FileRegion)");
    }

    /** Data bytes of all parts, each checked as by {@link #dataLength(ReferenceCounted)}. */
    static long dataLength(List<? extends ReferenceCounted> list) {
        long total = 0;
        int n = list.size();
        for (int i = 0; i < n; i++) {
            total += dataLength(list.get(i));
        }
        return total;
    }

    /** Takes ownership of a part already checked by the factory; {@code length} is its dataLength. */
    final void takePart(ReferenceCounted part, long length) {
        parts.add(part);
        dataLength += length;
    }

    /** Takes ownership of parts already checked by the factory; {@code total} is their dataLength. */
    final void takeParts(List<? extends ReferenceCounted> list, long total) {
        int n = list.size();
        for (int i = 0; i < n; i++) {
            parts.add(list.get(i));
        }
        dataLength += total;
    }

    /** Number of data parts. */
    public final int partCount() {
        return parts.size();
    }

    /** Data part {@code i}, in order; still owned by this message. */
    public final ReferenceCounted part(int i) {
        return parts.get(i);
    }

    /** Total bytes of data in the parts. */
    public final long dataLength() {
        return dataLength;
    }

    /** Releases the parts; subclasses clear their own fields and call this. */
    @Override
    protected void clear() {
        int n = parts.size();
        try {
            for (int i = 0; i < n; i++) {
                parts.get(i).release();
            }
        } finally {
            if (n > KEPT_PART_CAPACITY) {
                parts = new ArrayList<>(4);
            } else {
                parts.clear();
            }
            dataLength = 0;
        }
    }

    @Override
    public NbdPayloadReply touch(Object hint) {
        int n = parts.size();
        for (int i = 0; i < n; i++) {
            parts.get(i).touch(hint);
        }
        return this;
    }
}
