package dev.shear.bitmap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import org.junit.jupiter.api.Test;

/**
 * {@link DirtyBitmap} against a trivial model: a {@link BitSet} of granules (style.md §6). The seed is
 * printed in every message and can be fixed with {@code -Dshear.seed=N}.
 */
class DirtyBitmapTest {
    private static final long SEED = Long.getLong("shear.seed", System.nanoTime());

    /** The reference: one bit per granule, runs computed byte range by byte range. */
    static final class Model {
        final long size;
        final int bits;
        final BitSet chunks = new BitSet();

        Model(long size, int bits) {
            this.size = size;
            this.bits = bits;
        }

        void mark(long off, long len) {
            if (len > 0) {
                chunks.set((int) (off >>> bits), (int) ((off + len - 1) >>> bits) + 1);
            }
        }

        boolean dirtyByte(long b) {
            return chunks.get((int) (b >>> bits));
        }

        /** Runs over [off, off + len) as "offset+length:d|c" strings, walking granule by granule. */
        List<String> runs(long off, long len) {
            List<String> out = new ArrayList<>();
            long pos = off;
            long end = off + len;
            while (pos < end) {
                boolean d = dirtyByte(pos);
                long next = Math.min(end, ((pos >>> bits) + 1) << bits);
                while (next < end && dirtyByte(next) == d) {
                    next = Math.min(end, ((next >>> bits) + 1) << bits);
                }
                out.add(pos + "+" + (next - pos) + (d ? ":d" : ":c"));
                pos = next;
            }
            return out;
        }
    }

    static List<String> runs(DirtyBitmap b, long off, long len) {
        List<String> out = new ArrayList<>();
        b.forEachRun(off, len, (o, l, d) -> out.add(o + "+" + l + (d ? ":d" : ":c")));
        return out;
    }

    @Test
    void randomOperationsShouldMatchBitSetModel() {
        SplittableRandom rnd = new SplittableRandom(SEED);
        for (int round = 0; round < 200; round++) {
            int bits = 9 + rnd.nextInt(8);
            long size = 1 + rnd.nextLong(600L << bits);   // up to 600 granules, often a partial last one
            DirtyBitmap b = DirtyBitmap.create("b", size, 1L << bits, true, false);
            Model m = new Model(size, bits);
            String ctx = "seed=" + SEED + " round=" + round + " size=" + size + " granularity=" + (1L << bits);
            for (int op = 0; op < 40; op++) {
                long off = rnd.nextLong(size);
                long len = rnd.nextInt(8) == 0 ? size - off : rnd.nextLong(Math.min(size - off, 40L << bits) + 1);
                switch (rnd.nextInt(10)) {
                    case 0 -> {
                        b.clear(off, len);
                        // Model of the inward alignment: only whole granules inside the range are cleared.
                        long g = 1L << bits;
                        long first = (off + g - 1) / g;
                        long endChunk = off + len == size ? (size + g - 1) / g : (off + len) / g;
                        if (first < endChunk) {
                            m.chunks.clear((int) first, (int) endChunk);
                        }
                    }
                    case 1 -> {
                        if (rnd.nextInt(5) == 0) {
                            b.clear();
                            m.chunks.clear();
                        }
                    }
                    default -> {
                        b.mark(off, len);
                        m.mark(off, len);
                    }
                }
                long wOff = rnd.nextLong(size);
                long wLen = 1 + rnd.nextLong(size - wOff);
                assertEquals(m.runs(wOff, wLen), runs(b, wOff, wLen), ctx + " op=" + op + " window=" + wOff + "+"
                        + wLen);
                assertEquals((long) m.chunks.cardinality() << bits, b.dirtyBytes(), ctx);
                boolean anyDirty = false;
                for (long x = wOff >>> bits; x <= (wOff + wLen - 1) >>> bits; x++) {
                    anyDirty |= m.chunks.get((int) x);
                }
                assertEquals(anyDirty, b.isDirty(wOff, wLen), ctx + " isDirty " + wOff + "+" + wLen);
            }
            assertEquals(m.runs(0, size), runs(b, 0, size), ctx + " whole disk");
        }
    }

    @Test
    void mergeOfDifferentGranularitiesShouldDirtyEveryTouchedTargetGranule() {
        SplittableRandom rnd = new SplittableRandom(SEED);
        for (int round = 0; round < 100; round++) {
            long size = 1 + rnd.nextLong(1L << 22);
            int tBits = 9 + rnd.nextInt(10);
            DirtyBitmap target = DirtyBitmap.create("t", size, 1L << tBits, true, false);
            Model tm = new Model(size, tBits);
            List<DirtyBitmap> sources = new ArrayList<>();
            List<Model> models = new ArrayList<>();
            for (int s = 0; s < 1 + rnd.nextInt(4); s++) {
                int sBits = 9 + rnd.nextInt(10);
                DirtyBitmap src = DirtyBitmap.create("s" + s, size, 1L << sBits, rnd.nextBoolean(), false);
                Model sm = new Model(size, sBits);
                for (int k = 0; k < 10; k++) {
                    long off = rnd.nextLong(size);
                    long len = 1 + rnd.nextLong(Math.min(size - off, 1L << 16));
                    src.mark(off, len);
                    sm.mark(off, len);
                }
                sources.add(src);
                models.add(sm);
            }
            target.merge(sources.toArray(new DirtyBitmap[0]));
            // Model: a target granule is dirty iff any byte of it (inside the disk) is dirty in a source.
            long g = 1L << tBits;
            for (long c = 0; c * g < size; c++) {
                for (Model sm : models) {
                    for (long x = c * g; x < Math.min(size, (c + 1) * g); x = ((x >>> sm.bits) + 1) << sm.bits) {
                        if (sm.dirtyByte(x)) {
                            tm.chunks.set((int) c);
                        }
                    }
                }
            }
            assertEquals(tm.runs(0, size), runs(target, 0, size), "seed=" + SEED + " round=" + round);
            DirtyBitmap u = DirtyBitmap.union("u", 1L << tBits, sources.toArray(new DirtyBitmap[0]));
            assertEquals(runs(target, 0, size), runs(u, 0, size), "seed=" + SEED + " union round=" + round);
        }
    }

    @Test
    void chunkIndicesAboveTwoToThe31ShouldBeUnsigned() {
        long size = 2L << 40;   // 2 TiB at 512 B: 2^32 chunks, the largest bitmap qcow2 can store
        DirtyBitmap b = DirtyBitmap.create("big", size, 512, true, true);
        assertEquals(DirtyBitmap.MAX_CHUNKS, b.chunkCount());
        b.mark(size - 512, 512);
        b.mark((1L << 31) * 512 - 512, 1024);   // straddles chunk 2^31 - 1 / 2^31
        assertEquals(List.of("0+1099511627264:c", "1099511627264+1024:d", "1099511628288+1099511626752:c",
                "2199023255040+512:d"), runs(b, 0, size));
        assertTrue(b.isDirty(size - 1, 1));
        assertEquals(3 * 512, b.dirtyBytes());
        DirtyBitmap c = b.copy("c", false, false);
        b.clear(size - 512, 512);
        assertFalse(b.isDirty(size - 1, 1));
        assertTrue(c.isDirty(size - 1, 1));
    }

    @Test
    void moreThanTwoToThe32ChunksShouldBeRefusedNamingTheLimit() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> DirtyBitmap.create("b", 16L << 40, 512, true, true));
        assertTrue(e.getMessage().contains("(expected: <= 2^32, what qcow2 can store; use granularity >= 4096)"),
                e.getMessage());
        DirtyBitmap ok = DirtyBitmap.create("b", 16L << 40, 4096, true, true);
        assertEquals(1L << 32, ok.chunkCount());
        assertThrows(IllegalArgumentException.class, () -> DirtyBitmap.create("b", 1, 256, true, true));
        assertThrows(IllegalArgumentException.class, () -> DirtyBitmap.create("b", 1, 4L << 30, true, true));
        assertThrows(IllegalArgumentException.class, () -> DirtyBitmap.create("b", 1, 3000, true, true));
    }

    @Test
    void markOutsideTheDiskShouldThrow() {
        DirtyBitmap b = DirtyBitmap.create("b", 1 << 20, 65536, true, false);
        assertThrows(IndexOutOfBoundsException.class, () -> b.mark((1 << 20) - 1, 2));
        assertThrows(IndexOutOfBoundsException.class, () -> b.mark(-1, 1));
        b.mark(1 << 20, 0);
        assertTrue(b.isClean());
    }

    @Test
    void walkOfManyRunsShouldCrossBatchesAndStopWhenAsked() {
        DirtyBitmap b = DirtyBitmap.create("b", 1L << 30, 65536, true, false);
        for (long c = 0; c < 4096; c += 2) {
            b.mark(c << 16, 1);
        }
        List<String> all = runs(b, 0, 1L << 30);
        assertEquals(4096, all.size());   // 2048 dirty, 2047 clean between, one clean tail
        int[] seen = {0};
        b.forEachRun(0, 1L << 30, (o, l, d) -> ++seen[0] < DirtyBitmap.RUN_BATCH + 3);
        assertEquals(DirtyBitmap.RUN_BATCH + 3, seen[0]);
    }

    /** The write-path invariant: concurrent marks are never lost. */
    @Test
    void concurrentMarksShouldAllBeRecorded() throws InterruptedException {
        DirtyBitmap b = DirtyBitmap.create("b", 1L << 32, 4096, true, false);
        int threads = 4;
        CountDownLatch start = new CountDownLatch(1);
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            final int id = t;
            Thread th = new Thread(() -> {
                try {
                    start.await();
                } catch (InterruptedException e) {
                    return;
                }
                for (long c = id; c < 200_000; c += threads) {
                    b.mark(c * 8192, 100);
                }
            });
            th.start();
            ts.add(th);
        }
        start.countDown();
        for (Thread th : ts) {
            th.join();
        }
        assertEquals(200_000L * 4096, b.dirtyBytes());
    }
}
