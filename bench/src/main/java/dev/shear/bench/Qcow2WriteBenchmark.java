package dev.shear.bench;

import dev.shear.block.ImageFile;
import dev.shear.qcow2.Qcow2CreateOptions;
import dev.shear.qcow2.Qcow2Creator;
import dev.shear.qcow2.Qcow2Image;
import dev.shear.qcow2.Qcow2OpenOptions;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
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
 * The qcow2 write path on a real file (page cache; no fsync per write, as a guest without FUA):
 * <ul>
 *   <li>{@link #allocatingRandomWrite}: random cluster-aligned writes into a fresh, empty image: every
 *       write allocates (a 4 KiB write into a 64 KiB cluster also writes the 60 KiB of zeros around it,
 *       merged into one write), so this is allocation + copy-on-write cost;</li>
 *   <li>{@link #overwriteRandomWrite}: random writes into an image whose clusters are all allocated:
 *       the in-place path (no metadata lock);</li>
 *   <li>{@link #sequentialWrite1M}: 1 MiB sequential writes into a fresh image (batched allocation).</li>
 * </ul>
 * The image is recreated for every iteration so allocating benchmarks keep allocating.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(2)
@State(Scope.Benchmark)
public class Qcow2WriteBenchmark {
    /** Request size of the random benchmarks. */
    @Param({"4096", "65536"})
    public int requestSize;

    /** Cluster size of the image. */
    @Param({"65536"})
    public int clusterSize;

    /** Virtual size: large enough that an iteration of allocating writes never runs out of fresh clusters. */
    static final long SIZE = 32L << 30;
    /** The overwrite image: small enough to preallocate quickly. */
    static final long OVERWRITE_SIZE = 256L << 20;

    private Path dir;
    private Qcow2Image fresh;
    private Qcow2Image full;
    private ByteBuffer buffer;
    private ByteBuffer mib;
    private long[] freshOffsets;     // distinct cluster-aligned offsets, precomputed
    private long[] overwriteOffsets;
    private int nextFresh;
    private int nextOverwrite;
    private long sequential;

    @Setup(Level.Trial)
    public void setUpTrial() throws IOException {
        dir = Files.createTempDirectory("shear-write-bench");
        byte[] data = new byte[Math.max(requestSize, 1 << 20)];
        new SplittableRandom(42).nextBytes(data);
        buffer = ByteBuffer.wrap(data, 0, requestSize).slice();
        mib = ByteBuffer.wrap(data, 0, 1 << 20).slice();
        Path f = dir.resolve("full.qcow2");
        Qcow2Creator.create(f, new Qcow2CreateOptions(OVERWRITE_SIZE, clusterSize, 3, 0, false, false, 16, null,
                null, null));
        full = open(f);
        for (long off = 0; off < OVERWRITE_SIZE; off += 1 << 20) {
            mib.clear();
            full.write(off, mib, 0);
        }
        full.flush();
        SplittableRandom rnd = new SplittableRandom(7);
        overwriteOffsets = new long[1 << 16];
        for (int i = 0; i < overwriteOffsets.length; i++) {
            overwriteOffsets[i] = rnd.nextLong(OVERWRITE_SIZE / requestSize) * requestSize;
        }
        long clusters = SIZE / clusterSize;
        freshOffsets = new long[1 << 20];
        for (int i = 0; i < freshOffsets.length; i++) {
            // a multiplicative walk over the clusters: distinct for the first `clusters` steps, scattered
            freshOffsets[i] = ((i * 0x9E3779B97F4A7C15L) >>> 1) % clusters * clusterSize;
        }
    }

    @Setup(Level.Iteration)
    public void setUpIteration() throws IOException {
        Path f = dir.resolve("fresh.qcow2");
        Qcow2Creator.create(f, new Qcow2CreateOptions(SIZE, clusterSize, 3, 0, false, false, 16, null, null, null));
        fresh = open(f);
        nextFresh = 0;
        sequential = 0;
    }

    @TearDown(Level.Iteration)
    public void tearDownIteration() throws IOException {
        fresh.close();
        Files.deleteIfExists(dir.resolve("fresh.qcow2"));
    }

    @TearDown(Level.Trial)
    public void tearDownTrial() throws IOException {
        full.close();
        Files.deleteIfExists(dir.resolve("full.qcow2"));
        Files.deleteIfExists(dir);
    }

    static Qcow2Image open(Path p) throws IOException {
        return Qcow2Image.open(ImageFile.open(p, true), Qcow2OpenOptions.defaults().withReadOnly(false));
    }

    @Benchmark
    public int allocatingRandomWrite() throws IOException {
        buffer.clear();
        long off = freshOffsets[nextFresh++ & (freshOffsets.length - 1)];
        fresh.write(off, buffer, 0);
        return buffer.position();
    }

    @Benchmark
    public int overwriteRandomWrite() throws IOException {
        buffer.clear();
        full.write(overwriteOffsets[nextOverwrite++ & (overwriteOffsets.length - 1)], buffer, 0);
        return buffer.position();
    }

    @Benchmark
    public int sequentialWrite1M() throws IOException {
        mib.clear();
        long off = sequential;
        sequential = (sequential + (1 << 20)) % SIZE;
        fresh.write(off, mib, 0);
        return mib.position();
    }

    /** Where the benchmark keeps its files (for the sanity test). */
    Path dir() {
        return dir;
    }

    Qcow2Image freshImage() {
        return fresh;
    }
}
