package dev.shear.fleece.scratch;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.Zeros;
import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/** A scratch target in memory, for tests: one array per cluster, zero clusters as a null array. */
public final class MemoryScratch implements ScratchTarget {
    private static final byte[] ZERO_MARK = new byte[0];

    private final long capacityBytes;
    private final ConcurrentHashMap<Long, byte[]> clusters = new ConcurrentHashMap<>();
    private final AtomicLong used = new AtomicLong();
    private volatile boolean closed;

    public MemoryScratch(long capacityBytes) {
        this.capacityBytes = capacityBytes;
    }

    @Override
    public String name() {
        return "memory-scratch";
    }

    @Override
    public void put(long clusterIndex, ByteBuffer src) throws BlockException {
        requireOpen();
        byte[] copy = new byte[src.remaining()];
        src.get(copy);
        if (Zeros.isZero(copy, 0, copy.length)) {
            remove(clusterIndex);
            clusters.put(clusterIndex, ZERO_MARK);
            return;
        }
        long u;
        do {
            u = used.get();
            if (u + copy.length > capacityBytes) {
                throw new BlockException(BlockErrorKind.NO_SPACE, name(), -1, "scratch capacity: " + u + " + "
                        + copy.length + " bytes (expected: <= capacity " + capacityBytes + ")");
            }
        } while (!used.compareAndSet(u, u + copy.length));
        remove(clusterIndex);
        clusters.put(clusterIndex, copy);
    }

    @Override
    public void get(long clusterIndex, int offsetInCluster, ByteBuffer dst) throws BlockException {
        requireOpen();
        byte[] c = clusters.get(clusterIndex);
        if (c == null) {
            throw new BlockException(BlockErrorKind.IO, name(), -1, "cluster " + clusterIndex + ": not stored");
        }
        if (c == ZERO_MARK) {
            int n = dst.remaining();
            for (int i = 0; i < n; i++) {
                dst.put((byte) 0);
            }
            return;
        }
        dst.put(c, offsetInCluster, dst.remaining());
    }

    @Override
    public boolean isZero(long clusterIndex) {
        return clusters.get(clusterIndex) == ZERO_MARK;
    }

    @Override
    public void remove(long clusterIndex) {
        byte[] old = clusters.remove(clusterIndex);
        if (old != null) {
            used.addAndGet(-old.length);
        }
    }

    @Override
    public long usedBytes() {
        return used.get();
    }

    @Override
    public long capacityBytes() {
        return capacityBytes;
    }

    @Override
    public long storedClusters() {
        return clusters.size();
    }

    public boolean isClosed() {
        return closed;
    }

    @Override
    public void close() {
        closed = true;
        clusters.clear();
        used.set(0);
    }

    private void requireOpen() throws BlockException {
        if (closed) {
            throw new BlockException(BlockErrorKind.SHUTDOWN, name(), -1, "memory scratch: closed");
        }
    }
}
