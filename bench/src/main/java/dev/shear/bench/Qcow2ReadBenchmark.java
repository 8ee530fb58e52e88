package dev.shear.bench;

import dev.shear.bench.fixtures.BenchImages;
import dev.shear.block.BlockDevice;
import dev.shear.block.ImageFile;
import dev.shear.block.RawImage;
import dev.shear.qcow2.Qcow2Image;
import dev.shear.qcow2.Qcow2OpenOptions;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Data-cluster reads through {@link Qcow2Image} against the same bytes through {@link RawImage}: the
 * cost of the qcow2 mapping (L1/L2 lookup, run building, metadata cache) over a plain pread.
 *
 * <p>Fixture: {@code imageMiB} of {@code SplittableRandom(42)} data as a raw file and its
 * {@code qemu-img convert} qcow2 twin with {@code 1 << clusterBits} clusters, both in the page cache;
 * the L2 cache is warm (one full read in setup) and large enough for the whole image (32 MiB default).
 * Both benchmarks read the same precomputed offsets in the same order into a direct buffer of
 * {@code requestSize} bytes (what a Netty-based NBD server hands down): {@code sequential} walks the
 * image request by request and wraps; {@code random} visits 8192 request-aligned offsets drawn from
 * {@code SplittableRandom(42)}.
 *
 * <p>Reading the result: scores are ops/s; MB/s = ops/s x requestSize, and because both benchmarks
 * share every parameter, qcow2Read / rawRead of one cell is directly the qcow2/raw throughput ratio
 * ({@code bench/run-read-benchmarks.sh} prints both).
 *
 * <p>Single-threaded: the cursor is plain state of this Scope.Benchmark object (run with -t 1).
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 2, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@State(Scope.Benchmark)
public class Qcow2ReadBenchmark {
    /** Random offsets per trial: a power of two, enough to defeat any per-offset luck. */
    static final int RANDOM_OFFSETS = 8192;

    @Param({"16", "21"})
    public int clusterBits;

    @Param({"4096", "65536", "2097152"})
    public int requestSize;

    @Param({"sequential", "random"})
    public String pattern;

    /** Size of each image (the sanity tests shrink it). */
    @Param({"256"})
    public int imageMiB;

    Path dir;
    Path rawPath;
    Path qcow2Path;
    RawImage raw;
    Qcow2Image qcow2;
    long[] offsets;       // guest offsets, request-aligned, in visiting order
    int cursor;           // next index into offsets
    ByteBuffer qcow2Dst;
    ByteBuffer rawDst;

    @Setup(Level.Trial)
    public void setUp() throws IOException {
        BenchImages.requireQemuTools();
        long size = (long) imageMiB << 20;
        if (size % requestSize != 0 || size < (1L << clusterBits)) {
            throw new IllegalArgumentException("imageMiB: " + imageMiB + " (expected: a multiple of requestSize "
                    + requestSize + " and of the cluster size " + (1 << clusterBits) + ")");
        }
        dir = BenchImages.createTempDir("shear-read-bench-");
        rawPath = BenchImages.writeRandomRaw(dir.resolve("data.raw"), size);
        qcow2Path = BenchImages.convert(rawPath, dir.resolve("data.qcow2"), 1 << clusterBits,
                BenchImages.Compression.NONE);
        raw = RawImage.open(rawPath, false);
        qcow2 = Qcow2Image.open(ImageFile.open(qcow2Path, false), Qcow2OpenOptions.defaults());
        offsets = offsets(pattern, size, requestSize);
        cursor = 0;
        qcow2Dst = ByteBuffer.allocateDirect(requestSize);
        rawDst = ByteBuffer.allocateDirect(requestSize);
        warm(qcow2);
        warm(raw);
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        try {
            if (qcow2 != null) {
                qcow2.close();
            }
            if (raw != null) {
                raw.close();
            }
        } finally {
            BenchImages.deleteRecursively(dir);
        }
    }

    @Benchmark
    public ByteBuffer qcow2Read() throws IOException {
        ByteBuffer dst = qcow2Dst;
        dst.clear();
        qcow2.read(nextOffset(), dst);
        return dst;
    }

    @Benchmark
    public ByteBuffer rawRead() throws IOException {
        ByteBuffer dst = rawDst;
        dst.clear();
        raw.read(nextOffset(), dst);
        return dst;
    }

    /** The next offset of the precomputed sequence, wrapping (no RNG in the measured path). */
    long nextOffset() {
        int i = cursor;
        cursor = i + 1 == offsets.length ? 0 : i + 1;
        return offsets[i];
    }

    /** Request-aligned offsets: every request of the image in order, or RANDOM_OFFSETS seeded draws. */
    static long[] offsets(String pattern, long size, int requestSize) {
        long requests = size / requestSize;
        switch (pattern) {
            case "sequential": {
                long[] o = new long[(int) requests];
                for (int i = 0; i < o.length; i++) {
                    o[i] = (long) i * requestSize;
                }
                return o;
            }
            case "random": {
                SplittableRandom rnd = new SplittableRandom(BenchImages.SEED);
                long[] o = new long[RANDOM_OFFSETS];
                for (int i = 0; i < o.length; i++) {
                    o[i] = rnd.nextLong(requests) * requestSize;
                }
                return o;
            }
            default:
                throw new IllegalArgumentException("pattern: " + pattern + " (expected: sequential or random)");
        }
    }

    /** Reads the whole device once: page cache for its file, and for qcow2 every L2 table cached. */
    static void warm(BlockDevice device) throws IOException {
        ByteBuffer b = ByteBuffer.allocateDirect(1 << 21);
        for (long pos = 0; pos < device.size(); pos += b.capacity()) {
            b.clear().limit((int) Math.min(b.capacity(), device.size() - pos));
            device.read(pos, b);
        }
    }
}
