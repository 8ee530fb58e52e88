package dev.shear.bench;

import dev.shear.bitmap.BitmapCodec;
import dev.shear.bitmap.DirtyBitmap;
import java.io.IOException;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Dirty bitmap hot paths (dirty-bitmaps.md; design.md §Performance model): a mark on the write path
 * (alone and with two threads contending for one bitmap), a dirty-extent walk over 1 TiB at 1 % dirty
 * (what a backup's block status costs), a merge of 10 such bitmaps (a backup "since C" in the older
 * chain model) and the qcow2 encode/decode of one (close and open of an image).
 *
 * <p>Fixtures: 1 TiB disks at 64 KiB granularity (16 Mi chunks), 1 % of chunks dirty in runs of 1-16
 * chunks at random places, all from {@code new SplittableRandom(42 + i)}.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(2)
@State(Scope.Benchmark)
public class BitmapBenchmark {
    static final long TIB = 1L << 40;
    static final long GRANULARITY = 64 << 10;
    static final int CLUSTER_BITS = 16;

    /** The bitmap that marks go to: shared by all threads, as the write path shares it. */
    DirtyBitmap target;
    /** 4 KiB write offsets, precomputed: no RNG in the hot path. Power-of-two length. */
    long[] writeOffsets;
    /** 1 TiB at 1 % dirty. */
    DirtyBitmap onePercent;
    /** Ten different 1 TiB bitmaps at 1 % dirty. */
    DirtyBitmap[] ten;
    /** {@link #onePercent} encoded as qcow2 data clusters. */
    BitmapCodec.Encoded encoded;
    long[] table;

    /** Per-thread cursor into {@link #writeOffsets}. */
    @State(Scope.Thread)
    public static class Cursor {
        int next;

        @Setup(Level.Trial)
        public void setUp() {
            next = (int) Thread.currentThread().getId() * 7919;
        }
    }

    @Setup(Level.Trial)
    public void setUp() {
        target = DirtyBitmap.create("target", TIB, GRANULARITY, true, true);
        SplittableRandom rnd = new SplittableRandom(42);
        writeOffsets = new long[1 << 16];
        for (int i = 0; i < writeOffsets.length; i++) {
            writeOffsets[i] = rnd.nextLong(TIB / 4096) * 4096;
        }
        onePercent = onePercentDirty("one", 42);
        ten = new DirtyBitmap[10];
        for (int i = 0; i < ten.length; i++) {
            ten[i] = onePercentDirty("b" + i, 43 + i);
        }
        encoded = BitmapCodec.encode(onePercent, CLUSTER_BITS);
        table = new long[encoded.tableSize()];
        for (BitmapCodec.DataCluster c : encoded.clusters()) {
            table[c.tableIndex()] = (long) (c.tableIndex() + 1) << CLUSTER_BITS;   // fake host offsets
        }
    }

    /** 1 % of 1 TiB's chunks dirty, in runs of 1-16 chunks. */
    static DirtyBitmap onePercentDirty(String name, long seed) {
        DirtyBitmap b = DirtyBitmap.create(name, TIB, GRANULARITY, true, true);
        SplittableRandom rnd = new SplittableRandom(seed);
        long chunks = TIB / GRANULARITY;
        long want = chunks / 100;
        long marked = 0;
        while (marked < want) {
            long run = 1 + rnd.nextInt(16);
            long at = rnd.nextLong(chunks - run);
            b.mark(at * GRANULARITY, run * GRANULARITY);
            marked += run;
        }
        return b;
    }

    @Benchmark
    @Threads(1)
    public DirtyBitmap mark(Cursor cursor) {
        target.mark(writeOffsets[cursor.next++ & (writeOffsets.length - 1)], 4096);
        return target;
    }

    @Benchmark
    @Threads(2)
    public DirtyBitmap markContended(Cursor cursor) {
        target.mark(writeOffsets[cursor.next++ & (writeOffsets.length - 1)], 4096);
        return target;
    }

    /** Dirty extents of the whole 1 TiB disk: the count of runs visited. */
    @Benchmark
    @OutputTimeUnit(TimeUnit.MICROSECONDS)
    public long dirtyExtents() {
        long[] n = {0};
        onePercent.forEachDirty(0, TIB, (off, len, dirty) -> {
            n[0]++;
            return true;
        });
        return n[0];
    }

    /** Union of ten 1 TiB bitmaps into a new one. */
    @Benchmark
    @OutputTimeUnit(TimeUnit.MICROSECONDS)
    public DirtyBitmap merge10() {
        return DirtyBitmap.union("u", GRANULARITY, ten);
    }

    /** Ten 1 TiB bitmaps merged into a coarser (1 MiB) target: the walk-and-mark path. */
    @Benchmark
    @OutputTimeUnit(TimeUnit.MICROSECONDS)
    public DirtyBitmap merge10Coarser() {
        return DirtyBitmap.union("u", 1 << 20, ten);
    }

    @Benchmark
    @OutputTimeUnit(TimeUnit.MICROSECONDS)
    public BitmapCodec.Encoded encode() {
        return BitmapCodec.encode(onePercent, CLUSTER_BITS);
    }

    @Benchmark
    @OutputTimeUnit(TimeUnit.MICROSECONDS)
    public DirtyBitmap decode() throws IOException {
        return BitmapCodec.decode("d", TIB, Long.numberOfTrailingZeros(GRANULARITY), true, true, table, CLUSTER_BITS,
                (host, dst) -> {
                    byte[] c = encoded.clusters().get(clusterIndex(host)).bytes();
                    dst.put(c, 0, dst.remaining());
                }, "bench");
    }

    /** Host offset back to the position of its cluster in {@link #encoded} (slices are in table order). */
    private int clusterIndex(long host) {
        int tableIndex = (int) (host >>> CLUSTER_BITS) - 1;
        int lo = 0;
        int hi = encoded.clusters().size() - 1;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (encoded.clusters().get(mid).tableIndex() < tableIndex) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }
}
