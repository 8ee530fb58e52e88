package dev.shear.fleece;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

class ClusterLocksTest {
    private static final long SEED = Long.getLong("shear.seed", 42L);

    @Test
    void writersToDifferentClustersShouldProceedInParallel() throws Exception {
        ClusterLocks locks = new ClusterLocks(16);
        locks.lockExclusive(1, 1);
        try {
            CountDownLatch done = new CountDownLatch(1);
            Thread t = new Thread(() -> {
                locks.lockExclusive(2, 5);
                locks.unlockExclusive(2, 5);
                done.countDown();
            });
            t.start();
            assertTrue(done.await(10, TimeUnit.SECONDS), "cluster 2..5 must not wait for cluster 1");
            CountDownLatch blocked = new CountDownLatch(1);
            Thread u = new Thread(() -> {
                locks.lockShared(17, 17);          // same stripe as cluster 1
                locks.unlockShared(17, 17);
                blocked.countDown();
            });
            u.start();
            assertFalse(blocked.await(50, TimeUnit.MILLISECONDS), "a cluster sharing the stripe waits");
            locks.unlockExclusive(1, 1);
            assertTrue(blocked.await(10, TimeUnit.SECONDS));
        } finally {
            if (locks.isHeldExclusively(1)) {
                locks.unlockExclusive(1, 1);
            }
        }
    }

    /** Ranges that wrap the stripe table or cover it whole, locked from many threads: no deadlock. */
    @Test
    @Timeout(value = 20, unit = TimeUnit.SECONDS)
    void wrappingRangesShouldNeverDeadlock() throws Exception {
        ClusterLocks locks = new ClusterLocks(8);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        AtomicInteger rounds = new AtomicInteger();
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            SplittableRandom r = new SplittableRandom(SEED + i);
            Thread t = new Thread(() -> {
                try {
                    for (int k = 0; k < 5_000; k++) {
                        long first = r.nextLong(64);
                        long last = first + r.nextLong(12);      // sometimes wraps, sometimes covers all 8
                        boolean exclusive = r.nextBoolean();
                        if (exclusive) {
                            locks.lockExclusive(first, last);
                            for (long c = first; c <= last; c++) {
                                assertTrue(locks.isHeldExclusively(c));
                            }
                            locks.unlockExclusive(first, last);
                        } else {
                            locks.lockShared(first, last);
                            locks.unlockShared(first, last);
                        }
                        rounds.incrementAndGet();
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            });
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) {
            t.join();
        }
        if (failure.get() != null) {
            throw new AssertionError("seed " + SEED, failure.get());
        }
        assertEquals(20_000, rounds.get());
    }
}
