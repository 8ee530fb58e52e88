package dev.shear.bench;

import dev.shear.bench.fixtures.BenchImages;
import dev.shear.block.ImageFile;
import dev.shear.qcow2.ClusterMapping;
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
 * Reads of whole compressed clusters (qcow2-format.md §7): read csize bytes, inflate one cluster.
 *
 * <p>Fixture: {@code imageMiB} of seeded compressible data ({@link BenchImages#writeCompressibleRaw},
 * about 2.5:1) converted by {@code qemu-img convert -c} with 64 KiB clusters and {@code codec} =
 * deflate (compression_type=zlib) or zstd; {@code uncompressed} is the same data without {@code -c},
 * the baseline. Setup refuses an image whose clusters did not come out compressed. One op reads one
 * whole cluster at a cluster-aligned offset drawn from {@code SplittableRandom(42)} into a direct
 * buffer; MB/s = ops/s x 65536.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 2, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@State(Scope.Benchmark)
public class CompressedReadBenchmark {
    static final int CLUSTER_BITS = 16;
    static final int OFFSETS = 4096;

    @Param({"deflate", "zstd", "uncompressed"})
    public String codec;

    /** Size of the image (compression at setup is the slow part: keep it modest). */
    @Param({"64"})
    public int imageMiB;

    Path dir;
    Path rawPath;
    Path qcow2Path;
    Qcow2Image qcow2;
    long[] offsets;
    int cursor;
    ByteBuffer dst;

    @Setup(Level.Trial)
    public void setUp() throws IOException {
        BenchImages.requireQemuTools();
        BenchImages.Compression compression = switch (codec) {
            case "deflate" -> BenchImages.Compression.DEFLATE;
            case "zstd" -> BenchImages.Compression.ZSTD;
            case "uncompressed" -> BenchImages.Compression.NONE;
            default -> throw new IllegalArgumentException("codec: " + codec
                    + " (expected: deflate, zstd or uncompressed)");
        };
        int clusterSize = 1 << CLUSTER_BITS;
        long size = (long) imageMiB << 20;
        dir = BenchImages.createTempDir("shear-compressed-bench-");
        rawPath = BenchImages.writeCompressibleRaw(dir.resolve("text.raw"), size);
        qcow2Path = BenchImages.convert(rawPath, dir.resolve("text.qcow2"), clusterSize, compression);
        qcow2 = Qcow2Image.open(ImageFile.open(qcow2Path, false), Qcow2OpenOptions.defaults());
        SplittableRandom rnd = new SplittableRandom(BenchImages.SEED);
        long clusters = size / clusterSize;
        offsets = new long[OFFSETS];
        for (int i = 0; i < offsets.length; i++) {
            offsets[i] = rnd.nextLong(clusters) * clusterSize;
        }
        cursor = 0;
        dst = ByteBuffer.allocateDirect(clusterSize);
        boolean wantCompressed = compression != BenchImages.Compression.NONE;
        for (long off : offsets) {
            ClusterMapping m = qcow2.map(off, clusterSize);
            if ((m instanceof ClusterMapping.Compressed) != wantCompressed) {
                throw new IllegalStateException("cluster at guest offset 0x" + Long.toHexString(off) + ": " + m
                        + " (expected: " + (wantCompressed ? "compressed" : "uncompressed") + " for codec "
                        + codec + "; is the data compressible?)");
            }
        }
        Qcow2ReadBenchmark.warm(qcow2);
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        try {
            if (qcow2 != null) {
                qcow2.close();
            }
        } finally {
            BenchImages.deleteRecursively(dir);
        }
    }

    @Benchmark
    public ByteBuffer compressedRead() throws IOException {
        int i = cursor;
        cursor = (i + 1) & (OFFSETS - 1);
        ByteBuffer b = dst;
        b.clear();
        qcow2.read(offsets[i], b);
        return b;
    }
}
