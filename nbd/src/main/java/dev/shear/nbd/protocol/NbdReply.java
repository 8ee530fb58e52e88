package dev.shear.nbd.protocol;

import io.netty.util.Recycler;

/**
 * One transmission-phase reply message (nbd-protocol.md §5): a simple reply, or one chunk of a
 * structured reply. Each message is written to the socket as a unit, so that bytes of two chunks
 * never interleave (§12 pitfall 7). Whether a chunk goes out with the 20-byte structured header or
 * the 32-byte extended one is the encoder's choice ({@link NbdReplyEncoder}).
 *
 * <p>The replies of the hot path are pooled ({@link NbdPooledMessage}: get them with
 * {@code newInstance}; the encoder's superclass releases them after encode). {@link ErrorChunk}
 * is a plain record: errors are not the hot path.
 */
public sealed interface NbdReply permits NbdSimpleReply, NbdOffsetDataChunk, NbdReply.OffsetHoleChunk,
        NbdReply.BlockStatusChunk, NbdReply.ErrorChunk, NbdReply.DoneChunk {

    long cookie();

    /** The request's offset, echoed in extended reply headers (§5.3). */
    long requestOffset();

    /** NBD_REPLY_TYPE_OFFSET_HOLE: {@code length} bytes at {@code offset} read as zeros. Pooled. */
    final class OffsetHoleChunk extends NbdPooledReply implements NbdReply {
        private static final Recycler<OffsetHoleChunk> RECYCLER = recycler(OffsetHoleChunk::new);

        private long offset;
        private int length;
        private boolean done;

        private OffsetHoleChunk(Recycler.Handle<OffsetHoleChunk> handle) {
            super(handle);
        }

        public static OffsetHoleChunk newInstance(long cookie, long requestOffset, long offset, int length,
                boolean done) {
            OffsetHoleChunk c = RECYCLER.get();
            c.reuse();
            c.echo(cookie, requestOffset);
            c.offset = offset;
            c.length = length;
            c.done = done;
            return c;
        }

        public long offset() {
            return offset;
        }

        public int length() {
            return length;
        }

        public boolean done() {
            return done;
        }

        @Override
        protected void clear() {
            // Primitives only: nothing to release.
        }

        @Override
        public String toString() {
            return "OffsetHoleChunk(cookie=0x" + Long.toHexString(cookie()) + ", offset=0x" + Long.toHexString(offset)
                    + ", length=" + Integer.toUnsignedString(length) + ", done=" + done + ")";
        }
    }

    /**
     * NBD_REPLY_TYPE_BLOCK_STATUS (compact: lengths and flags must fit 32 bits) or
     * NBD_REPLY_TYPE_BLOCK_STATUS_EXT (extended headers). {@code count} descriptors, at least one, from
     * the first {@code count} entries of {@code lengths} and {@code flags}, arrays that the chunk keeps
     * (not copies) until it is released. Pooled.
     */
    final class BlockStatusChunk extends NbdPooledReply implements NbdReply {
        private static final Recycler<BlockStatusChunk> RECYCLER = recycler(BlockStatusChunk::new);

        private int contextId;
        private long[] lengths;
        private long[] flags;
        private int count;
        private boolean done;

        private BlockStatusChunk(Recycler.Handle<BlockStatusChunk> handle) {
            super(handle);
        }

        public static BlockStatusChunk newInstance(long cookie, long requestOffset, int contextId, long[] lengths,
                long[] flags, int count, boolean done) {
            if (count < 1 || count > lengths.length || count > flags.length) {
                throw new IllegalArgumentException("descriptors: " + count + " (expected: 1.."
                        + Math.min(lengths.length, flags.length) + ")");
            }
            BlockStatusChunk c = RECYCLER.get();
            c.reuse();
            c.echo(cookie, requestOffset);
            c.contextId = contextId;
            c.lengths = lengths;
            c.flags = flags;
            c.count = count;
            c.done = done;
            return c;
        }

        public int contextId() {
            return contextId;
        }

        /** Descriptor lengths (the first {@link #count()} are used); the chunk's own array, not a copy. */
        public long[] lengths() {
            return lengths;
        }

        /** Descriptor status flags (the first {@link #count()} are used); the chunk's own array. */
        public long[] flags() {
            return flags;
        }

        public int count() {
            return count;
        }

        public boolean done() {
            return done;
        }

        @Override
        protected void clear() {
            lengths = null;
            flags = null;
        }

        @Override
        public String toString() {
            return "BlockStatusChunk(cookie=0x" + Long.toHexString(cookie()) + ", context=" + contextId
                    + ", descriptors=" + count + ", done=" + done + ")";
        }
    }

    /** NBD_REPLY_TYPE_ERROR with a short message. */
    record ErrorChunk(long cookie, long requestOffset, NbdError error, String message, boolean done)
            implements NbdReply {
    }

    /** NBD_REPLY_TYPE_NONE with DONE: ends a reply that has nothing more to say. Pooled. */
    final class DoneChunk extends NbdPooledReply implements NbdReply {
        private static final Recycler<DoneChunk> RECYCLER = recycler(DoneChunk::new);

        private DoneChunk(Recycler.Handle<DoneChunk> handle) {
            super(handle);
        }

        public static DoneChunk newInstance(long cookie, long requestOffset) {
            DoneChunk c = RECYCLER.get();
            c.reuse();
            c.echo(cookie, requestOffset);
            return c;
        }

        @Override
        protected void clear() {
            // Primitives only: nothing to release.
        }

        @Override
        public String toString() {
            return "DoneChunk(cookie=0x" + Long.toHexString(cookie()) + ")";
        }
    }
}
