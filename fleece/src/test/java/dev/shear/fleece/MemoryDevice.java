package dev.shear.fleece;

import dev.shear.block.BlockCapabilities;
import dev.shear.block.BlockDevice;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.Extent;
import dev.shear.block.ExtentSink;
import dev.shear.block.WriteFlags;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A writable in-memory device with real block status, for tests: 4 KiB blocks that are a hole (never
 * written, or discarded), zero (write-zeroes with NO_HOLE) or data. Write-zeroes without NO_HOLE and
 * discard make whole blocks holes; partial blocks keep their state and get zeros (discard zeroes them
 * too, so that the live contents stay deterministic).
 *
 * <p>Every request is atomic, like a real device's view of its own metadata: mutations take
 * {@link #lock} exclusively (bytes and block states change together), reads and block status take it
 * shared. Copy-before-write sends overlapping requests concurrently (two guest writes to a cluster that
 * is no longer NEEDED), and its "was zero" decision trusts block status; a double whose status could
 * say hole over data (write-zeroes fills zeros, an overlapping write copies its bytes and marks DATA,
 * then write-zeroes marks HOLE) would make a later snapshot record ZERO for a cluster holding data.
 */
final class MemoryDevice implements BlockDevice {
    static final int BLOCK = 4096;
    private static final byte HOLE = 0;
    private static final byte ZERO = 1;
    private static final byte DATA = 2;

    private final String name;
    private final byte[] data;
    private final byte[] blocks;
    private final boolean reportZeros;
    /** Exclusive for mutations, shared for reads and block status: see the class comment. */
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    final AtomicLong reads = new AtomicLong();
    final AtomicLong writes = new AtomicLong();

    MemoryDevice(String name, int size) {
        this(name, size, true);
    }

    /** {@code reportZeros} false: block status says data everywhere (like a raw file). */
    MemoryDevice(String name, int size, boolean reportZeros) {
        this.name = name;
        this.data = new byte[size];
        this.blocks = new byte[(size + BLOCK - 1) / BLOCK];
        this.reportZeros = reportZeros;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public long size() {
        return data.length;
    }

    @Override
    public BlockCapabilities capabilities() {
        return new BlockCapabilities(true, true, true, true, true, false, true, 1, BLOCK,
                BlockCapabilities.DEFAULT_MAXIMUM_BLOCK_SIZE);
    }

    /** A copy of the contents (call when no write is in flight, e.g. at the snapshot point). */
    byte[] contents() {
        lock.readLock().lock();
        try {
            return data.clone();
        } finally {
            lock.readLock().unlock();
        }
    }

    /**
     * The first block whose status says hole or zero but whose bytes are not all zeros, as a message,
     * or null when status and contents agree everywhere (call when no request is in flight).
     */
    String statusMismatch() {
        lock.readLock().lock();
        try {
            return statusMismatchLocked();
        } finally {
            lock.readLock().unlock();
        }
    }

    private String statusMismatchLocked() {
        for (int b = 0; b < blocks.length; b++) {
            if (reportZeros && blocks[b] != DATA) {
                int from = b * BLOCK;
                int to = Math.min(data.length, from + BLOCK);
                for (int i = from; i < to; i++) {
                    if (data[i] != 0) {
                        return String.format("block %d [%d, %d) has status %s but byte %d is 0x%02x", b, from, to,
                                blocks[b] == HOLE ? "hole" : "zero", i, data[i]);
                    }
                }
            }
        }
        return null;
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws BlockException {
        checkRange(offset, dst.remaining());
        reads.incrementAndGet();
        lock.readLock().lock();
        try {
            dst.put(data, (int) offset, dst.remaining());
        } finally {
            lock.readLock().unlock();
        }
    }

    @Override
    public void blockStatus(long offset, long length, ExtentSink sink) throws java.io.IOException {
        checkRange(offset, length);
        // Extents are built under the lock and handed to the sink outside it (the sink may call back).
        List<Extent> extents = new ArrayList<>();
        lock.readLock().lock();
        try {
            statusLocked(offset, length, extents);
        } finally {
            lock.readLock().unlock();
        }
        for (Extent x : extents) {
            if (!sink.accept(x)) {
                return;
            }
        }
    }

    private void statusLocked(long offset, long length, List<Extent> out) {
        long pos = offset;
        long end = offset + length;
        while (pos < end) {
            int b = (int) (pos / BLOCK);
            byte state = reportZeros ? blocks[b] : DATA;
            int e = b + 1;
            while ((long) e * BLOCK < end && (reportZeros ? blocks[e] : DATA) == state) {
                e++;
            }
            long stop = Math.min(end, (long) e * BLOCK);
            Extent x = switch (state) {
                case HOLE -> Extent.hole(pos, stop - pos);
                case ZERO -> Extent.zero(pos, stop - pos, 0);
                default -> Extent.data(pos, stop - pos, 0, pos);
            };
            out.add(x);
            pos = stop;
        }
    }

    @Override
    public void write(long offset, ByteBuffer src, int flags) throws BlockException {
        int n = src.remaining();
        checkRange(offset, n);
        writes.incrementAndGet();
        lock.writeLock().lock();
        try {
            src.get(data, (int) offset, n);
            mark(offset, n, DATA, false);
        } finally {
            lock.writeLock().unlock();
        }
    }

    @Override
    public void writeZeroes(long offset, long length, int flags) throws BlockException {
        checkRange(offset, length);
        if (WriteFlags.has(flags, WriteFlags.FAST_ZERO)) {
            throw new BlockException(BlockErrorKind.NOT_SUPPORTED, name, offset, "fast zero: not here");
        }
        writes.incrementAndGet();
        lock.writeLock().lock();
        try {
            Arrays.fill(data, (int) offset, (int) (offset + length), (byte) 0);
            mark(offset, length, WriteFlags.has(flags, WriteFlags.NO_HOLE) ? ZERO : HOLE, true);
        } finally {
            lock.writeLock().unlock();
        }
    }

    @Override
    public void discard(long offset, long length, int flags) throws BlockException {
        checkRange(offset, length);
        writes.incrementAndGet();
        lock.writeLock().lock();
        try {
            Arrays.fill(data, (int) offset, (int) (offset + length), (byte) 0);
            mark(offset, length, HOLE, true);
        } finally {
            lock.writeLock().unlock();
        }
    }

    /** Sets the state of the blocks of the range: whole blocks only when {@code wholeOnly}; lock held exclusively. */
    private void mark(long offset, long length, byte state, boolean wholeOnly) {
        if (length == 0) {
            return;
        }
        long end = offset + length;
        long first = wholeOnly ? (offset + BLOCK - 1) / BLOCK : offset / BLOCK;
        long stop = wholeOnly ? (end == data.length ? blocks.length : end / BLOCK) : (end + BLOCK - 1) / BLOCK;
        for (long b = first; b < stop; b++) {
            blocks[(int) b] = state;
        }
    }

    @Override
    public void close() {
    }
}
