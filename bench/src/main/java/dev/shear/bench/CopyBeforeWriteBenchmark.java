package dev.shear.bench;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.RawImage;
import dev.shear.fleece.CopyBeforeWrite;
import dev.shear.fleece.SnapshotOptions;
import dev.shear.fleece.SnapshotView;
import dev.shear.fleece.scratch.SpillCodec;
import dev.shear.fleece.scratch.SpillStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Comparator;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Group;
import org.openjdk.jmh.annotations.GroupThreads;
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
 * Copy-before-write on its hot paths (style.md §7): a guest write that must first copy its clusters
 * into a spill store (lz4, zstd or none), alone and with a concurrent snapshot reader, and snapshot
 * reads of copied versus uncopied clusters, against a plain write without a snapshot.
 *
 * <p>The live device is a raw file in a temporary directory (page cache warm), 64 KiB copy granularity,
 * half of every image's 4 KiB blocks random and half repetitive text (lz4 halves it). Every measured
 * write goes to clusters not yet copied: the writer walks the image sequentially and, when it reaches
 * the end, ends the snapshot and starts a new one (scratch deleted and recreated) — once per
 * {@code imageSize / writeSize} writes, a cost amortised into the figures (about 1 % at 1 MiB writes).
 *
 * <pre>
 * java -jar bench/target/benchmarks.jar CopyBeforeWriteBenchmark -f 1 -wi 2 -i 3
 * </pre>
 * Compare with QEMU's figures in shared/bench/README.md only through the end-to-end scripts there.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(2)
@State(Scope.Benchmark)
public class CopyBeforeWriteBenchmark {
    private static final int BLOCK = 4096;

    /** Guest write (and snapshot read) size. */
    @Param({"65536", "1048576"})
    public int writeSize;

    /** Spill store codec. */
    @Param({"LZ4", "ZSTD", "NONE"})
    public String codec;

    /** Bytes of each image; the writer wraps (and re-snapshots) at the end. */
    @Param({"268435456"})
    public long imageSize;

    private Path dir;
    private RawImage live;
    private CopyBeforeWrite cbw;
    /** The running snapshot; replaced by the writer thread at wrap-around. */
    private volatile SnapshotView view;
    private SpillCodec spillCodec;

    /** A second image with half its clusters copied, for the read benchmarks; never written after setup. */
    private RawImage readLive;
    private CopyBeforeWrite readCbw;
    private SnapshotView readView;

    /** A third image without a snapshot: the baseline write. */
    private RawImage plain;

    private ByteBuffer payload;
    private ByteBuffer readBuffer;
    private ByteBuffer groupReadBuffer;
    private long[] readOffsets;
    private int nextReadIndex;
    private long nextWrite;
    private long nextPlainWrite;
    private long nextGroupRead;

    @Setup(Level.Trial)
    public void setUp() throws IOException {
        spillCodec = SpillCodec.valueOf(codec);
        dir = Files.createTempDirectory("shear-cbw-bench-");
        SplittableRandom random = new SplittableRandom(42);
        live = RawImage.open(makeImage(dir.resolve("live.raw"), imageSize, random), true);
        cbw = new CopyBeforeWrite(live);
        view = startSnapshot(cbw);

        long readSize = Math.max(4L * writeSize, 32L << 20);
        readLive = RawImage.open(makeImage(dir.resolve("read.raw"), readSize, random), true);
        readCbw = new CopyBeforeWrite(readLive);
        readView = startSnapshot(readCbw);
        ByteBuffer one = ByteBuffer.allocate(1);
        for (long c = 0; c < readSize / 2; c += 64 * 1024) {   // copy the first half: one byte per cluster
            one.clear();
            readCbw.write(c, one, 0);
        }
        readOffsets = new long[1024];
        for (int i = 0; i < readOffsets.length; i++) {
            readOffsets[i] = random.nextLong(readSize / 2 / writeSize) * writeSize;
        }
        plain = RawImage.open(makeImage(dir.resolve("plain.raw"), Math.max(4L * writeSize, 32L << 20), random),
                true);

        payload = ByteBuffer.allocateDirect(writeSize);
        byte[] p = new byte[writeSize];
        fill(p, random);
        payload.put(p).flip();
        readBuffer = ByteBuffer.allocateDirect(writeSize);
        groupReadBuffer = ByteBuffer.allocateDirect(writeSize);
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        for (AutoCloseableIo c : new AutoCloseableIo[] {cbw::close, readCbw::close, plain::close}) {
            try {
                c.close();
            } catch (IOException | RuntimeException e) {
                // keep tearing down
            }
        }
        try (Stream<Path> files = Files.walk(dir)) {
            files.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        }
    }

    @FunctionalInterface
    private interface AutoCloseableIo {
        void close() throws IOException;
    }

    // --- writes ---

    /** A write whose clusters must be copied first, nobody reading. Returns the next offset. */
    @Benchmark
    public long copyBeforeWrite() throws IOException {
        return writeNext();
    }

    /** The same write without a snapshot: what copy-before-write costs on top. */
    @Benchmark
    public long plainWrite() throws IOException {
        if (nextPlainWrite + writeSize > plain.size()) {
            nextPlainWrite = 0;
        }
        plain.write(nextPlainWrite, payload.duplicate(), 0);
        nextPlainWrite += writeSize;
        return nextPlainWrite;
    }

    /** The writer of the pair: copy-before-write while a snapshot reader runs. */
    @Benchmark
    @Group("withReader")
    @GroupThreads(1)
    public long withReaderWrite() throws IOException {
        return writeNext();
    }

    /**
     * The reader of the pair: sequential snapshot reads of {@code writeSize}, like nbdcopy; it meets
     * copied and uncopied clusters. Returns bytes read (0 while the writer replaces the snapshot).
     */
    @Benchmark
    @Group("withReader")
    @GroupThreads(1)
    public int withReaderRead() throws IOException {
        SnapshotView v = view;
        if (nextGroupRead + writeSize > v.size()) {
            nextGroupRead = 0;
        }
        groupReadBuffer.clear();
        try {
            v.read(nextGroupRead, groupReadBuffer);
        } catch (BlockException e) {
            if (e.kind() == BlockErrorKind.SHUTDOWN) {
                return 0;
            }
            throw e;
        }
        nextGroupRead += writeSize;
        return groupReadBuffer.position();
    }

    // --- snapshot reads ---

    /** A snapshot read of clusters already copied: from the spill store (decompressed). */
    @Benchmark
    public int readCopied() throws IOException {
        readBuffer.clear();
        readView.read(readOffsets[nextReadIndex++ & (readOffsets.length - 1)], readBuffer);
        return readBuffer.position();
    }

    /** A snapshot read of clusters not yet copied: from the live image. */
    @Benchmark
    public int readUncopied() throws IOException {
        readBuffer.clear();
        long offset = readOffsets[nextReadIndex++ & (readOffsets.length - 1)] + readView.size() / 2;
        readView.read(offset, readBuffer);
        return readBuffer.position();
    }

    // --- helpers ---

    private long writeNext() throws IOException {
        if (nextWrite + writeSize > imageSize) {
            view.close();                 // wrap-around: a fresh snapshot, so every write copies again
            view = startSnapshot(cbw);
            nextWrite = 0;
        }
        cbw.write(nextWrite, payload.duplicate(), 0);
        nextWrite += writeSize;
        return nextWrite;
    }

    private SnapshotView startSnapshot(CopyBeforeWrite device) throws IOException {
        return device.startSnapshot(SnapshotOptions.full(), SpillStore.createTemp(dir, spillCodec, Long.MAX_VALUE),
                null);
    }

    /** The snapshot view of the read benchmarks (sanity test). */
    SnapshotView readView() {
        return readView;
    }

    SnapshotView writeView() {
        return view;
    }

    RawImage readLive() {
        return readLive;
    }

    /** Half random, half repetitive 4 KiB blocks. */
    private static void fill(byte[] b, SplittableRandom random) {
        byte[] text = "copy-before-write fleecing benchmark ".getBytes(StandardCharsets.US_ASCII);
        byte[] block = new byte[BLOCK];
        for (int i = 0; i < b.length; i += BLOCK) {
            int n = Math.min(BLOCK, b.length - i);
            if (random.nextBoolean()) {
                random.nextBytes(block);
                System.arraycopy(block, 0, b, i, n);
            } else {
                for (int j = 0; j < n; j++) {
                    b[i + j] = text[(i + j) % text.length];
                }
            }
        }
    }

    private static Path makeImage(Path file, long size, SplittableRandom random) throws IOException {
        byte[] chunk = new byte[1 << 20];
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            for (long pos = 0; pos < size; pos += chunk.length) {
                int n = (int) Math.min(chunk.length, size - pos);
                fill(chunk, random);
                ByteBuffer src = ByteBuffer.wrap(chunk, 0, n);
                while (src.hasRemaining()) {
                    ch.write(src, pos + src.position());
                }
            }
        }
        return file;
    }
}
