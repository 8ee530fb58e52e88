package dev.shear.nbd.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** {@link FairLane}: connections take turns in the shared pool, bounded per lane, nothing dropped. */
class FairLaneTest {

    /** Blocks the pool's only thread until the returned latch is released. */
    static CountDownLatch gate(ExecutorService pool) {
        CountDownLatch open = new CountDownLatch(1);
        pool.execute(() -> {
            try {
                open.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        return open;
    }

    @Test
    void aLateSingleRequestShouldRunAfterAtMostMaxRunningOfAnotherLanesBacklog() throws Exception {
        ExecutorService pool = Executors.newSingleThreadExecutor();
        try {
            List<String> order = new CopyOnWriteArrayList<>();
            CountDownLatch done = new CountDownLatch(101);
            FairLane reader = new FairLane(pool, 2);
            FairLane writer = new FairLane(pool, 2);
            CountDownLatch open = gate(pool);
            for (int i = 0; i < 100; i++) {
                String name = "r" + i;
                reader.execute(() -> {
                    order.add(name);
                    done.countDown();
                });
            }
            writer.execute(() -> {
                order.add("w");
                done.countDown();
            });
            assertEquals(100, reader.queued(), "nothing starts while the pool is busy");
            open.countDown();
            assertTrue(done.await(10, TimeUnit.SECONDS));
            assertEquals(2, order.indexOf("w"), order.subList(0, 5).toString());
            for (int i = 0; i < 100; i++) {
                assertEquals("r" + i, order.get(i < 2 ? i : i + 1), "a lane keeps arrival order");
            }
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void aLaneShouldNeverRunMoreThanMaxRunningAtOnce() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(8);
        try {
            FairLane lane = new FairLane(pool, 3);
            AtomicInteger running = new AtomicInteger();
            AtomicInteger peak = new AtomicInteger();
            CountDownLatch done = new CountDownLatch(200);
            for (int i = 0; i < 200; i++) {
                lane.execute(() -> {
                    int now = running.incrementAndGet();
                    peak.accumulateAndGet(now, Math::max);
                    try {
                        Thread.sleep(0, 200_000);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                    running.decrementAndGet();
                    done.countDown();
                });
            }
            assertTrue(done.await(20, TimeUnit.SECONDS));
            assertTrue(peak.get() <= 3, "peak " + peak.get());
            assertTrue(peak.get() >= 2, "the lane does run in parallel: peak " + peak.get());
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void aRefusedTaskShouldBeTakenBackAndTheRefusalThrown() {
        ExecutorService pool = Executors.newSingleThreadExecutor();
        pool.shutdown();
        FairLane lane = new FairLane(pool, 2);
        assertThrows(RejectedExecutionException.class, () -> lane.execute(() -> { }));
        assertEquals(0, lane.queued());
    }

    @Test
    void tasksAcceptedBeforeThePoolStopsShouldAllRun() throws Exception {
        ExecutorService pool = Executors.newSingleThreadExecutor();
        try {
            FairLane lane = new FairLane(pool, 1);
            AtomicInteger ran = new AtomicInteger();
            CountDownLatch open = gate(pool);
            for (int i = 0; i < 5; i++) {
                lane.execute(ran::incrementAndGet);
            }
            pool.shutdown();    // the queued runner still runs; its resubmission is refused
            open.countDown();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
            assertEquals(5, ran.get());
            assertEquals(0, lane.queued());
        } finally {
            pool.shutdownNow();
        }
    }
}
