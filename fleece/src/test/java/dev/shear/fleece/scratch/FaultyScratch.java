package dev.shear.fleece.scratch;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import java.util.function.LongPredicate;

/**
 * A scratch target wrapper for tests: counts puts per cluster, fails chosen puts (by their sequence
 * number) with a chosen kind, and can make every put slow (a medium that stalls).
 */
public final class FaultyScratch implements ScratchTarget {
    private final ScratchTarget delegate;
    private final AtomicLong puts = new AtomicLong();
    private final ConcurrentHashMap<Long, AtomicLong> putsPerCluster = new ConcurrentHashMap<>();
    private volatile LongPredicate failPut = n -> false;
    private volatile BlockErrorKind failKind = BlockErrorKind.IO;
    private volatile long putDelayNanos;

    public FaultyScratch(ScratchTarget delegate) {
        this.delegate = delegate;
    }

    /** Fails the puts whose 0-based sequence number matches, with {@code kind}. */
    public FaultyScratch failPuts(LongPredicate which, BlockErrorKind kind) {
        this.failPut = which;
        this.failKind = kind;
        return this;
    }

    /** Every put takes at least this long (busy medium). */
    public FaultyScratch delayPuts(long nanos) {
        this.putDelayNanos = nanos;
        return this;
    }

    public long puts() {
        return puts.get();
    }

    public long putsOf(long clusterIndex) {
        AtomicLong n = putsPerCluster.get(clusterIndex);
        return n == null ? 0 : n.get();
    }

    public ScratchTarget delegate() {
        return delegate;
    }

    @Override
    public String name() {
        return "faulty(" + delegate.name() + ")";
    }

    @Override
    public void put(long clusterIndex, ByteBuffer src) throws IOException {
        long n = puts.getAndIncrement();
        if (failPut.test(n)) {
            throw new BlockException(failKind, name(), -1, "injected failure of put " + n + " (cluster "
                    + clusterIndex + ")");
        }
        long delay = putDelayNanos;
        if (delay > 0) {
            long deadline = System.nanoTime() + delay;
            for (long left = delay; left > 0; left = deadline - System.nanoTime()) {
                LockSupport.parkNanos(left);
            }
        }
        delegate.put(clusterIndex, src);
        putsPerCluster.computeIfAbsent(clusterIndex, k -> new AtomicLong()).incrementAndGet();
    }

    @Override
    public void get(long clusterIndex, int offsetInCluster, ByteBuffer dst) throws IOException {
        delegate.get(clusterIndex, offsetInCluster, dst);
    }

    @Override
    public boolean isZero(long clusterIndex) {
        return delegate.isZero(clusterIndex);
    }

    @Override
    public void remove(long clusterIndex) throws IOException {
        delegate.remove(clusterIndex);
    }

    @Override
    public long usedBytes() {
        return delegate.usedBytes();
    }

    @Override
    public long capacityBytes() {
        return delegate.capacityBytes();
    }

    @Override
    public long storedClusters() {
        return delegate.storedClusters();
    }

    @Override
    public void close() throws IOException {
        delegate.close();
    }
}
