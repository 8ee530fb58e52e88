package dev.shear.fleece;

import dev.shear.block.BlockException;
import dev.shear.block.Extent;
import dev.shear.block.ExtentCollector;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.SplittableRandom;

/** Helpers shared by the fleece tests. */
final class Fixtures {
    static final int CLUSTER = CbwLimits.MIN_CLUSTER_SIZE;

    private Fixtures() {
    }

    /** A device of {@code clusters} × 64 KiB whose every cluster holds distinct data. */
    static MemoryDevice filledDevice(int clusters, long seed) throws BlockException {
        MemoryDevice d = new MemoryDevice("mem", clusters * CLUSTER);
        byte[] b = new byte[CLUSTER];
        SplittableRandom r = new SplittableRandom(seed);
        for (int c = 0; c < clusters; c++) {
            r.nextBytes(b);
            d.write((long) c * CLUSTER, ByteBuffer.wrap(b), 0);
        }
        return d;
    }

    static byte[] read(dev.shear.block.BlockDevice d, long offset, int length) throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(length);
        d.read(offset, buf);
        return buf.array();
    }

    static byte[] slice(byte[] a, long offset, int length) {
        byte[] r = new byte[length];
        System.arraycopy(a, (int) offset, r, 0, length);
        return r;
    }

    static List<Extent> status(dev.shear.block.BlockDevice d, long offset, long length) throws IOException {
        ExtentCollector c = new ExtentCollector(offset, offset + length, Integer.MAX_VALUE);
        d.blockStatus(offset, length, c);
        return c.extents();
    }

    static ByteBuffer pattern(int length, int value) {
        byte[] b = new byte[length];
        java.util.Arrays.fill(b, (byte) value);
        return ByteBuffer.wrap(b);
    }
}
