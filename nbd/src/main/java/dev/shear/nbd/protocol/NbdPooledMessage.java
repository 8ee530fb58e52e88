package dev.shear.nbd.protocol;

import io.netty.util.AbstractReferenceCounted;
import io.netty.util.Recycler;
import java.util.function.Function;

/**
 * Base of the transmission-phase messages that are recycled instead of collected: the request and
 * the reply chunks of the hot path (style.md §4; the codec is otherwise allocation-free, so one
 * object per request and per chunk would be all the garbage it makes).
 *
 * <p>Life cycle. A factory ({@code newInstance}) takes an instance from the class's {@link Recycler},
 * sets every field and hands out exactly one reference. The message has one owner at a time and
 * ownership moves with it. The owner's last {@link #release()} calls {@link #clear()}, which releases
 * what the message owns (payload, data parts), and gives the instance back to the pool.
 *
 * <p>Invariant: after its last release an instance belongs to the pool. Nobody may read it any more,
 * not even the code that released it: the next {@code newInstance} of the same class on the thread
 * that first took it hands it out again with other fields (a recycled request read later would show
 * the cookie of a request decoded after it). So each message is released by its last user only:
 * <ul>
 *   <li>a request by the server's I/O task once the replies are built (they copy cookie and offset,
 *       never keep the request), or by the transmission handler when it answers or drops it itself;</li>
 *   <li>a reply by {@link io.netty.handler.codec.MessageToMessageEncoder} right after encode (data
 *       parts were retained into the output and travel on without the message), or by whoever fails
 *       to write it.</li>
 * </ul>
 * Double release throws ({@link io.netty.util.IllegalReferenceCountException}), as for ByteBufs.
 *
 * <p>Threads. Netty 4.2 pools only on FastThreadLocalThreads: event loops and threads of a
 * {@link io.netty.util.concurrent.DefaultThreadFactory}, i.e. every thread of the server, including the
 * I/O pool. Elsewhere (unit tests, tools) {@code newInstance} returns a fresh object and release
 * leaves it to the garbage collector. An instance may be released on any thread; it then returns to
 * the pool of the thread that created it through a multi-producer queue.
 */
abstract class NbdPooledMessage extends AbstractReferenceCounted {
    /**
     * Chunk of the recycler's cross-thread queue. Requests are taken on an event loop and released on
     * the I/O pool (replies the other way round), so idle instances wait in that queue; it allocates a
     * new chunk whenever more than one chunk's worth wait. 256 is four connections at
     * NbdServerConfig.DEFAULT_MAX_IN_FLIGHT (measured: 48 waiting cost 3 B per recycle at Netty's 32).
     */
    static final int RECYCLER_CHUNK_SIZE = 256;
    /** Instances kept per thread and class: Netty's default. */
    static final int RECYCLER_MAX_CAPACITY_PER_THREAD = 4096;

    private final Recycler.Handle<NbdPooledMessage> handle;

    @SuppressWarnings("unchecked")
    NbdPooledMessage(Recycler.Handle<? extends NbdPooledMessage> handle) {
        this.handle = (Recycler.Handle<NbdPooledMessage>) handle;
    }

    /** A recycler for one message class; {@code factory} makes a new instance bound to a handle. */
    static <T extends NbdPooledMessage> Recycler<T> recycler(Function<Recycler.Handle<T>, T> factory) {
        return new Recycler<T>(RECYCLER_CHUNK_SIZE, RECYCLER_MAX_CAPACITY_PER_THREAD, false) {
            @Override
            protected T newObject(Handle<T> h) {
                return factory.apply(h);
            }
        };
    }

    /** Makes a new or recycled instance live: one reference. Factories call it before setting fields. */
    final void reuse() {
        setRefCnt(1);
    }

    @Override
    protected final void deallocate() {
        clear();
        handle.recycle(this);
    }

    /**
     * Releases what the message owns and drops every reference, so that the pool keeps nothing alive.
     * Runs once, on the thread of the last release.
     */
    protected abstract void clear();

    @Override
    public NbdPooledMessage touch(Object hint) {
        return this;
    }
}
