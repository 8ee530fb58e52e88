package dev.shear.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class MetadataCacheTest {
    private static ByteBuffer table(long hostOffset, int size) {
        ByteBuffer b = ByteBuffer.allocate(size);
        for (int i = 0; i < size; i += 8) {
            b.putLong(i, hostOffset + i);
        }
        return b;
    }

    @Test
    void secondGetShouldHitWithoutLoading() throws IOException {
        MetadataCache cache = new MetadataCache("t", 1 << 20);
        AtomicInteger loads = new AtomicInteger();
        MetadataCache.Loader loader = off -> {
            loads.incrementAndGet();
            return table(off, 4096);
        };
        MetadataCache.Table a = cache.get(0x10000, loader);
        assertSame(a, cache.get(0x10000, loader));
        assertEquals(0x10008, a.getLong(8));
        assertEquals(1, loads.get());
        MetadataCache.Stats s = cache.stats();
        assertEquals(1, s.hits());
        assertEquals(1, s.loads());
        assertEquals(4096, s.usedBytes());
    }

    @Test
    void capacityShouldEvictLeastRecentlyUsed() throws IOException {
        MetadataCache cache = new MetadataCache("t", 2 * 4096);
        MetadataCache.Loader loader = off -> table(off, 4096);
        cache.get(0, loader);
        cache.get(4096, loader);
        cache.get(0, loader);           // 0 becomes most recent
        cache.get(8192, loader);        // evicts 4096
        MetadataCache.Stats s = cache.stats();
        assertEquals(1, s.evictions());
        assertEquals(2 * 4096, s.usedBytes());
        cache.get(0, loader);
        assertEquals(3, cache.stats().loads());
        cache.get(4096, loader);
        assertEquals(4, cache.stats().loads());
    }

    @Test
    void tableLargerThanCapacityShouldStillBeReturned() throws IOException {
        MetadataCache cache = new MetadataCache("t", 100);
        MetadataCache.Table t = cache.get(0, off -> table(off, 4096));
        assertEquals(4096, t.sizeBytes());
        cache.get(4096, off -> table(off, 4096));
        assertEquals(1, cache.stats().tables());
    }

    @Test
    void failedLoadShouldNotBeCachedAndShouldKeepItsKind() throws IOException {
        MetadataCache cache = new MetadataCache("t", 1 << 20);
        BlockException e = assertThrows(BlockException.class, () -> cache.get(0, off -> {
            throw BlockException.corrupt("img", off, "boom");
        }));
        assertEquals(BlockErrorKind.CORRUPT_IMAGE, e.kind());
        assertEquals(0, cache.stats().tables());
        cache.get(0, off -> table(off, 512));
        assertEquals(1, cache.stats().tables());
    }

    @Test
    void concurrentMissesOfOneTableShouldLoadOnce() throws Exception {
        MetadataCache cache = new MetadataCache("t", 1 << 20);
        AtomicInteger loads = new AtomicInteger();
        CountDownLatch release = new CountDownLatch(1);
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            List<Future<MetadataCache.Table>> futures = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                futures.add(pool.submit(() -> cache.get(0x20000, off -> {
                    loads.incrementAndGet();
                    try {
                        release.await(5, TimeUnit.SECONDS);
                    } catch (InterruptedException e) {
                        throw new java.io.InterruptedIOException();
                    }
                    return table(off, 4096);
                })));
            }
            // A different table is not blocked by the pending load (no global lock around I/O).
            assertEquals(0x30000, cache.get(0x30000, off -> table(off, 4096)).getLong(0));
            release.countDown();
            MetadataCache.Table first = futures.get(0).get(5, TimeUnit.SECONDS);
            for (Future<MetadataCache.Table> f : futures) {
                assertSame(first, f.get(5, TimeUnit.SECONDS));
            }
            assertEquals(1, loads.get());
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void randomConcurrentGetsShouldStayWithinCapacityAndReturnRightTables() throws Exception {
        long seed = Long.getLong("shear.seed", 42);
        MetadataCache cache = new MetadataCache("t", 8 * 512);
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            List<Future<?>> fs = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                long s = seed + t;
                fs.add(pool.submit(() -> {
                    SplittableRandom r = new SplittableRandom(s);
                    for (int i = 0; i < 2000; i++) {
                        long off = r.nextInt(32) * 512L;
                        MetadataCache.Table tb = cache.get(off, o -> table(o, 512));
                        if (tb.getLong(16) != off + 16) {
                            throw new AssertionError("seed " + s + ": wrong table for " + off);
                        }
                    }
                    return null;
                }));
            }
            for (Future<?> f : fs) {
                f.get(30, TimeUnit.SECONDS);
            }
            assertTrue(cache.stats().usedBytes() <= 8 * 512, cache.stats().toString());
        } finally {
            pool.shutdownNow();
        }
    }
}
