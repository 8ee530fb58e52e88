package dev.shear.nbd.protocol;

import io.netty.util.Recycler;

/**
 * Base of the pooled replies ({@link NbdPooledMessage}): the two fields every reply echoes from its
 * request, the cookie and (in extended headers, nbd-protocol.md §5.3) the request's offset. A factory
 * sets them with {@link #echo} right after {@code reuse()}; they are primitives, so {@link #clear}
 * of a subclass has nothing to do for them.
 */
abstract class NbdPooledReply extends NbdPooledMessage {
    private long cookie;
    private long requestOffset;

    NbdPooledReply(Recycler.Handle<? extends NbdPooledReply> handle) {
        super(handle);
    }

    /** Sets the request's cookie and offset that this reply echoes. */
    final void echo(long cookie, long requestOffset) {
        this.cookie = cookie;
        this.requestOffset = requestOffset;
    }

    public final long cookie() {
        return cookie;
    }

    /** The request's offset, echoed in extended reply headers. */
    public final long requestOffset() {
        return requestOffset;
    }
}
