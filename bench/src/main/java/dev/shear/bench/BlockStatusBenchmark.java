package dev.shear.bench;

import dev.shear.bench.fixtures.BenchImages;
import dev.shear.block.Extent;
import dev.shear.block.ExtentSink;
import dev.shear.block.ImageFile;
import dev.shear.qcow2.Qcow2Image;
import dev.shear.qcow2.Qcow2OpenOptions;
import java.io.IOException;
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
 * Whole-disk {@link Qcow2Image#blockStatus} (what an NBD client's first {@code NBD_CMD_BLOCK_STATUS}
 * sweep, or {@code qemu-img map}, asks), from metadata only, L2 cache warm.
 *
 * <ul>
 *   <li>{@code sparse1TiB}: {@code qemu-img create -f qcow2 1T} plus six 64 KiB writes
 *       ({@link BenchImages#SPARSE_WRITE_OFFSETS}): mostly empty L1 entries, a few L2 tables to scan.</li>
 *   <li>{@code dataImage}: the fully allocated {@code imageMiB} random-data image of
 *       {@link Qcow2ReadBenchmark}: every L2 entry visited, one host-contiguous run.</li>
 * </ul>
 * The sink only counts; each benchmark returns the number of extents the engine emitted (unmerged: the
 * engine may split a state at L2 table boundaries; merging is the NBD layer's job).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 2, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
public class BlockStatusBenchmark {

    /** Counts extents; reset before each walk. */
    static final class CountingSink implements ExtentSink {
        long count;

        @Override
        public boolean accept(Extent extent) {
            count++;
            return true;
        }
    }

    /** Base of both fixtures: one qcow2 image in a temp dir, opened read-only. */
    abstract static class ImageState {
        Path dir;
        Path path;
        Qcow2Image image;
        final CountingSink sink = new CountingSink();

        abstract Path create(Path dir, int clusterSize) throws IOException;

        void open(int clusterBits) throws IOException {
            BenchImages.requireQemuTools();
            dir = BenchImages.createTempDir("shear-status-bench-");
            path = create(dir, 1 << clusterBits);
            image = Qcow2Image.open(ImageFile.open(path, false), Qcow2OpenOptions.defaults());
            image.blockStatus(0, image.size(), sink);   // loads every L2 table the walk needs
        }

        void close() throws IOException {
            try {
                if (image != null) {
                    image.close();
                }
            } finally {
                BenchImages.deleteRecursively(dir);
            }
        }

        long walk() throws IOException {
            CountingSink s = sink;
            s.count = 0;
            image.blockStatus(0, image.size(), s);
            return s.count;
        }
    }

    @State(Scope.Benchmark)
    public static class Sparse extends ImageState {
        @Param({"16", "21"})
        public int clusterBits;

        @Override
        Path create(Path d, int clusterSize) throws IOException {
            return BenchImages.createSparse(d.resolve("sparse.qcow2"), BenchImages.TIB, clusterSize,
                    BenchImages.SPARSE_WRITE_OFFSETS);
        }

        @Setup(Level.Trial)
        public void setUp() throws IOException {
            open(clusterBits);
        }

        @TearDown(Level.Trial)
        public void tearDown() throws IOException {
            close();
        }
    }

    @State(Scope.Benchmark)
    public static class Data extends ImageState {
        @Param({"16", "21"})
        public int clusterBits;

        @Param({"256"})
        public int imageMiB;

        Path rawPath;

        @Override
        Path create(Path d, int clusterSize) throws IOException {
            rawPath = BenchImages.writeRandomRaw(d.resolve("data.raw"), (long) imageMiB << 20);
            return BenchImages.convert(rawPath, d.resolve("data.qcow2"), clusterSize, BenchImages.Compression.NONE);
        }

        @Setup(Level.Trial)
        public void setUp() throws IOException {
            open(clusterBits);
        }

        @TearDown(Level.Trial)
        public void tearDown() throws IOException {
            close();
        }
    }

    @Benchmark
    public long sparse1TiB(Sparse s) throws IOException {
        return s.walk();
    }

    @Benchmark
    public long dataImage(Data s) throws IOException {
        return s.walk();
    }
}
