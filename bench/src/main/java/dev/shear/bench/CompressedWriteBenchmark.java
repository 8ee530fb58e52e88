package dev.shear.bench;

import dev.shear.bench.fixtures.BenchImages;
import dev.shear.block.ImageFile;
import dev.shear.qcow2.Qcow2CreateOptions;
import dev.shear.qcow2.Qcow2Creator;
import dev.shear.qcow2.Qcow2Image;
import dev.shear.qcow2.Qcow2OpenOptions;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
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
 * Compressed cluster writes, as a push backup or {@code convert -c} does them
 * ({@link Qcow2Image#writeCompressed}): compress one 64 KiB cluster (zstd, or deflate with QEMU's 4 KiB
 * window), allocate its bytes, write them, link the L2 entry. One op = one cluster of the seeded
 * compressible data of {@link BenchImages#writeCompressibleRaw} (about 2.5:1), written to the next
 * fresh cluster of an image recreated every iteration; MB/s of input = ops/s x 65536.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 2, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@State(Scope.Benchmark)
public class CompressedWriteBenchmark {
    static final int CLUSTER_SIZE = 1 << 16;
    /** Distinct input clusters (16 MiB of data). */
    static final int INPUT_CLUSTERS = 256;
    /** Virtual size: more clusters than an iteration can write. */
    static final long SIZE = 64L << 30;

    @Param({"deflate", "zstd"})
    public String codec;

    private Path dir;
    private ByteBuffer input;
    private Qcow2Image image;
    private long next;

    @Setup(Level.Trial)
    public void setUpTrial() throws IOException {
        dir = BenchImages.createTempDir("shear-compressed-write-bench-");
        Path raw = BenchImages.writeCompressibleRaw(dir.resolve("input.raw"), (long) INPUT_CLUSTERS * CLUSTER_SIZE);
        byte[] bytes = Files.readAllBytes(raw);
        input = ByteBuffer.allocateDirect(bytes.length).put(bytes).flip();
        Files.delete(raw);
    }

    @Setup(Level.Iteration)
    public void setUpIteration() throws IOException {
        int type = switch (codec) {
            case "deflate" -> 0;
            case "zstd" -> 1;
            default -> throw new IllegalArgumentException("codec: " + codec + " (expected: deflate or zstd)");
        };
        Path f = dir.resolve("target.qcow2");
        Qcow2Creator.create(f, new Qcow2CreateOptions(SIZE, CLUSTER_SIZE, 3, type, false, false, 16, null, null,
                null));
        image = Qcow2Image.open(ImageFile.open(f, true), Qcow2OpenOptions.defaults().withReadOnly(false));
        next = 0;
    }

    @TearDown(Level.Iteration)
    public void tearDownIteration() throws IOException {
        image.close();
        Files.deleteIfExists(dir.resolve("target.qcow2"));
    }

    @TearDown(Level.Trial)
    public void tearDownTrial() throws IOException {
        BenchImages.deleteRecursively(dir);
    }

    @Benchmark
    public boolean writeCompressedCluster() throws IOException {
        long cluster = next++;
        int at = (int) (cluster % INPUT_CLUSTERS) * CLUSTER_SIZE;
        return image.writeCompressed(cluster * CLUSTER_SIZE, input.slice(at, CLUSTER_SIZE));
    }

    /** The image being written (for the sanity test). */
    Qcow2Image image() {
        return image;
    }

    /** Input cluster {@code i} (for the sanity test). */
    ByteBuffer inputCluster(int i) {
        return input.slice(i * CLUSTER_SIZE, CLUSTER_SIZE);
    }
}
