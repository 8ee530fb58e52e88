package dev.shear.fleece;

import dev.shear.block.BlockCapabilities;
import dev.shear.block.BlockDevice;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.Extent;
import dev.shear.block.ExtentSink;
import dev.shear.block.WriteFlags;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A writable in-memory device with real block status, for tests: 4 KiB blocks that are a hole (never
 * written, or discarded), zero (write-zeroes with NO_HOLE) or data. Write-zeroes without NO_HOLE and
 * discard make whole blocks holes; partial blocks keep their state and get zeros (discard zeroes them
 * too, so that the live contents stay deterministic). Thread-safe for non-overlapping requests, which
 * is all copy-before-write sends it concurrently for a cluster the snapshot still reads.
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
        return data.clone();
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws BlockException {
        checkRange(offset, dst.remaining());
        reads.incrementAndGet();
        dst.put(data, (int) offset, dst.remaining());
    }

    @Override
    public void blockStatus(long offset, long length, ExtentSink sink) throws java.io.IOException {
        checkRange(offset, length);
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
            if (!sink.accept(x)) {
                return;
            }
            pos = stop;
        }
    }

    @Override
    public void write(long offset, ByteBuffer src, int flags) throws BlockException {
        int n = src.remaining();
        checkRange(offset, n);
        writes.incrementAndGet();
        src.get(data, (int) offset, n);
        mark(offset, n, DATA, false);
    }

    @Override
    public void writeZeroes(long offset, long length, int flags) throws BlockException {
        checkRange(offset, length);
        if (WriteFlags.has(flags, WriteFlags.FAST_ZERO)) {
            throw new BlockException(BlockErrorKind.NOT_SUPPORTED, name, offset, "fast zero: not here");
        }
        writes.incrementAndGet();
        Arrays.fill(data, (int) offset, (int) (offset + length), (byte) 0);
        mark(offset, length, WriteFlags.has(flags, WriteFlags.NO_HOLE) ? ZERO : HOLE, true);
    }

    @Override
    public void discard(long offset, long length, int flags) throws BlockException {
        checkRange(offset, length);
        writes.incrementAndGet();
        Arrays.fill(data, (int) offset, (int) (offset + length), (byte) 0);
        mark(offset, length, HOLE, true);
    }

    /** Sets the state of the blocks of the range: whole blocks only when {@code wholeOnly}. */
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
