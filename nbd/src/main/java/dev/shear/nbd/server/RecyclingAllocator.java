package dev.shear.nbd.server;

import io.netty.buffer.AbstractByteBufAllocator;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.UnpooledDirectByteBuf;
import io.netty.util.internal.CleanableDirectBuffer;
import io.netty.util.internal.PlatformDependent;

import java.nio.ByteBuffer;
import java.util.Queue;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The connections' allocator: direct buffers of {@value #MIN_RECYCLED_BYTES} bytes up to
 * {@value #MAX_RECYCLED_BYTES} come from a bounded set of recycled blocks; everything else goes to the
 * delegate (Netty's default allocator).
 *
 * <p>Why: copied read replies (a snapshot export's reads, compressed clusters, TLS) and socket reads
 * of write payloads are 64 KiB to a few MiB each. For buffers that large Netty 4.2's adaptive allocator
 * (and its pooled one, at nbdcopy's 2 x 64 requests in flight) kept creating and dropping chunks: a
 * zeroed {@code ByteBuffer.allocateDirect} and fresh pages to fault in for almost every reply. That was
 * a fifth of the backup loop's CPU in a fleece read. A recycled block is allocated, zeroed and faulted
 * in once.
 *
 * <p>Blocks come in power-of-two sizes; a buffer is a view of the smallest block that holds it, and
 * its capacity is the size asked for. Releasing the buffer's last reference gives the block back, on
 * any thread. At most {@link #retainLimitBytes} of free blocks are kept, over all sizes; a block given
 * back beyond that is freed at once, not left to the garbage collector. Buffers are leak-aware like the
 * delegate's.
 */
final class RecyclingAllocator extends AbstractByteBufAllocator {
    static final int MIN_RECYCLED_BYTES = 64 << 10;
    /** Larger buffers are rare (reads above 4 MiB) and would tie up too much of the retain limit. */
    static final int MAX_RECYCLED_BYTES = 4 << 20;
    /** Free blocks kept by default: two connections' worth of nbdcopy's 64 x 256 KiB in flight. */
    static final long DEFAULT_RETAIN_BYTES = 32L << 20;

    private static final int MIN_BITS = Integer.numberOfTrailingZeros(MIN_RECYCLED_BYTES);
    private static final int MAX_BITS = Integer.numberOfTrailingZeros(MAX_RECYCLED_BYTES);

    /** The process's connections share one: free blocks are worth more shared than per server. */
    static final RecyclingAllocator DEFAULT = new RecyclingAllocator(ByteBufAllocator.DEFAULT, DEFAULT_RETAIN_BYTES);

    private final ByteBufAllocator delegate;
    private final long retainLimitBytes;
    /** Free blocks by size class: index 0 holds MIN_RECYCLED_BYTES. */
    private final Queue<CleanableDirectBuffer>[] free;
    /** Bytes held in {@link #free}; at most retainLimitBytes once an offer has settled. */
    private final AtomicLong retainedBytes = new AtomicLong();

    @SuppressWarnings("unchecked")
    RecyclingAllocator(ByteBufAllocator delegate, long retainLimitBytes) {
        super(true);
        if (retainLimitBytes < 0) {
            throw new IllegalArgumentException("retainLimitBytes: " + retainLimitBytes + " (expected: >= 0)");
        }
        this.delegate = delegate;
        this.retainLimitBytes = retainLimitBytes;
        this.free = new Queue[MAX_BITS - MIN_BITS + 1];
        for (int i = 0; i < free.length; i++) {
            long blocks = Math.max(2, retainLimitBytes >>> (MIN_BITS + i));   // the queue needs >= 2
            free[i] = PlatformDependent.newFixedMpmcQueue((int) Math.min(blocks, 1 << 16));
        }
    }

    @Override
    public boolean isDirectBufferPooled() {
        return true;
    }

    @Override
    protected ByteBuf newHeapBuffer(int initialCapacity, int maxCapacity) {
        return delegate.heapBuffer(initialCapacity, maxCapacity);
    }

    @Override
    protected ByteBuf newDirectBuffer(int initialCapacity, int maxCapacity) {
        if (initialCapacity < MIN_RECYCLED_BYTES || initialCapacity > MAX_RECYCLED_BYTES) {
            return delegate.directBuffer(initialCapacity, maxCapacity);
        }
        int sizeClass = sizeClass(initialCapacity);
        CleanableDirectBuffer block = free[sizeClass].poll();
        if (block != null) {
            retainedBytes.addAndGet(-blockBytes(sizeClass));
        } else {
            block = PlatformDependent.allocateDirect(blockBytes(sizeClass));
        }
        return toLeakAwareBuffer(new RecycledBuf(this, block, sizeClass, initialCapacity, maxCapacity));
    }

    /** Free blocks held now, in bytes. */
    long retainedBytes() {
        return retainedBytes.get();
    }

    /** Gives a block back: kept for the next buffer of its size if the retain limit allows, else freed. */
    private void recycle(CleanableDirectBuffer block, int sizeClass) {
        long bytes = blockBytes(sizeClass);
        if (retainedBytes.addAndGet(bytes) <= retainLimitBytes && free[sizeClass].offer(block)) {
            return;
        }
        retainedBytes.addAndGet(-bytes);
        block.clean();
    }

    /** The smallest size class whose blocks hold {@code bytes}; MIN <= bytes <= MAX. */
    static int sizeClass(int bytes) {
        return 32 - Integer.numberOfLeadingZeros(bytes - 1) - MIN_BITS;
    }

    static int blockBytes(int sizeClass) {
        return 1 << (MIN_BITS + sizeClass);
    }

    /**
     * A view of a recycled block. If it grows past its capacity, the base class moves it to memory of
     * its own (freed by the base class); the block is still given back at the last release.
     */
    private static final class RecycledBuf extends UnpooledDirectByteBuf {
        private final RecyclingAllocator owner;
        private final CleanableDirectBuffer block;
        private final int sizeClass;

        RecycledBuf(RecyclingAllocator owner, CleanableDirectBuffer block, int sizeClass, int capacity,
                int maxCapacity) {
            super(owner, viewOf(block.buffer(), capacity), maxCapacity);
            this.owner = owner;
            this.block = block;
            this.sizeClass = sizeClass;
            clear();   // the base class takes a wrapped buffer as written in full
        }

        private static ByteBuffer viewOf(ByteBuffer block, int capacity) {
            return block.duplicate().clear().limit(capacity);
        }

        @Override
        protected void deallocate() {
            super.deallocate();   // frees memory the buffer moved to when it grew; never the block
            owner.recycle(block, sizeClass);
        }
    }
}
