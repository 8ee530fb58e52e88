package dev.shear.nbd.protocol;

/**
 * One transmission-phase reply message (nbd-protocol.md §5): a simple reply, or one chunk of a
 * structured reply. Each message is written to the socket as a unit, so that bytes of two chunks
 * never interleave (§12 pitfall 7). Whether a chunk goes out with the 20-byte structured header or
 * the 32-byte extended one is the encoder's choice ({@link NbdReplyEncoder}).
 */
public sealed interface NbdReply permits NbdSimpleReply, NbdOffsetDataChunk, NbdReply.OffsetHoleChunk,
        NbdReply.BlockStatusChunk, NbdReply.ErrorChunk, NbdReply.DoneChunk {

    long cookie();

    /** The request's offset, echoed in extended reply headers (§5.3). */
    long requestOffset();

    /** NBD_REPLY_TYPE_OFFSET_HOLE: {@code length} bytes at {@code offset} read as zeros. */
    record OffsetHoleChunk(long cookie, long requestOffset, long offset, int length, boolean done)
            implements NbdReply {
    }

    /**
     * NBD_REPLY_TYPE_BLOCK_STATUS (compact: lengths and flags must fit 32 bits) or
     * NBD_REPLY_TYPE_BLOCK_STATUS_EXT (extended headers). {@code count} descriptors, at least one.
     */
    record BlockStatusChunk(long cookie, long requestOffset, int contextId, long[] lengths, long[] flags,
            int count, boolean done) implements NbdReply {
        public BlockStatusChunk {
            if (count < 1 || count > lengths.length || count > flags.length) {
                throw new IllegalArgumentException("descriptors: " + count + " (expected: 1.."
                        + Math.min(lengths.length, flags.length) + ")");
            }
        }
    }

    /** NBD_REPLY_TYPE_ERROR with a short message. */
    record ErrorChunk(long cookie, long requestOffset, NbdError error, String message, boolean done)
            implements NbdReply {
    }

    /** NBD_REPLY_TYPE_NONE with DONE: ends a reply that has nothing more to say. */
    record DoneChunk(long cookie, long requestOffset) implements NbdReply {
    }
}
