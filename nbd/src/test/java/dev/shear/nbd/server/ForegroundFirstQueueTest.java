package dev.shear.nbd.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** {@link ForegroundFirstQueue}: a guest's request overtakes a backup's backlog; the backup still gets turns. */
class ForegroundFirstQueueTest {
    private static Runnable named(String name, List<String> log) {
        return () -> log.add(name);
    }

    private static Runnable background(String name, List<String> log) {
        return (ForegroundFirstQueue.Background) () -> log.add(name);
    }

    @Test
    void foregroundShouldBeTakenFirstAndEachClassInArrivalOrder() throws Exception {
        ForegroundFirstQueue q = new ForegroundFirstQueue();
        List<String> log = new ArrayList<>();
        q.offer(background("b0", log));
        q.offer(background("b1", log));
        q.offer(named("f0", log));
        q.offer(named("f1", log));
        assertEquals(4, q.size());
        for (int i = 0; i < 4; i++) {
            q.take().run();
        }
        assertEquals(List.of("f0", "f1", "b0", "b1"), log);
        assertNull(q.poll());
        assertNull(q.poll(1, TimeUnit.MILLISECONDS));
    }

    @Test
    void aForegroundFloodShouldLeaveBackgroundOneTurnInEveryBurst() throws Exception {
        ForegroundFirstQueue q = new ForegroundFirstQueue();
        List<String> log = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            q.offer(background("b" + i, log));
        }
        int n = 3 * (ForegroundFirstQueue.FOREGROUND_BURST + 1);
        for (int i = 0; i < n; i++) {
            q.offer(named("f" + i, log));
        }
        for (int i = 0; i < n + 3; i++) {
            q.poll().run();
        }
        int burst = ForegroundFirstQueue.FOREGROUND_BURST;
        assertEquals("b0", log.get(burst), log.toString());
        assertEquals("b1", log.get(2 * burst + 1), log.toString());
        assertEquals("b2", log.get(3 * burst + 2), log.toString());
    }

    @Test
    void aGuestWriteShouldOvertakeABackupBacklogInTheRealPool() throws Exception {
        ThreadPoolExecutor pool = new ThreadPoolExecutor(1, 1, 60, TimeUnit.SECONDS, new ForegroundFirstQueue());
        try {
            List<String> order = new CopyOnWriteArrayList<>();
            CountDownLatch open = FairLaneTest.gate(pool);
            CountDownLatch done = new CountDownLatch(4 * 2 + 1);
            List<FairLane> readers = new ArrayList<>();
            for (int c = 0; c < 4; c++) {   // nbdcopy: four connections, many reads each
                readers.add(new FairLane(pool, 2, true));
            }
            for (int i = 0; i < 2; i++) {
                for (int c = 0; c < 4; c++) {
                    String name = "r" + c + "." + i;
                    readers.get(c).execute(() -> {
                        order.add(name);
                        done.countDown();
                    });
                }
            }
            new FairLane(pool, 2, false).execute(() -> {
                order.add("w");
                done.countDown();
            });
            open.countDown();
            assertTrue(done.await(10, TimeUnit.SECONDS));
            assertEquals(0, order.indexOf("w"), "the guest's write waited behind the backup: " + order);
            assertEquals(9, order.size());
        } finally {
            pool.shutdownNow();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
        }
    }
}
