package dev.shear.nbd.server;

import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * One connection's way into the shared I/O pool: its requests run in arrival order, at most
 * {@code maxRunning} at a time, and each time one finishes the lane goes back to the END of the
 * pool's queue. So connections take turns: a client with hundreds of reads in flight (nbdcopy's four
 * connections of 64 requests each) occupies at most {@code maxRunning} places in the pool queue per
 * connection, and a guest writer's single request waits behind a few requests, not behind all of
 * them. With one FIFO queue shared by every connection, the writer's latency was the time to drain
 * the reader's whole backlog.
 *
 * <p>Protocol: {@link #execute} queues the task and, if fewer than {@code maxRunning} runners are
 * active, submits a runner; a runner runs one task, then either resubmits itself (tasks left) or
 * retires. A runner is counted in {@link #runners} from submission until it retires, so the count
 * bounds the lane's places in the pool. When the pool refuses a runner (it is shutting down): from
 * {@link #execute}, the task is taken back and the refusal thrown to the caller, who answers the
 * request itself; from a finishing runner, the lane's remaining tasks run on that runner's thread, so
 * no accepted request is ever dropped.
 */
final class FairLane implements Executor {
    private final Executor pool;
    private final int maxRunning;
    /** The runner submitted to the pool. */
    private final Runnable runner = this::runOne;
    private final Queue<Runnable> tasks = new ConcurrentLinkedQueue<>();
    private final AtomicInteger runners = new AtomicInteger();

    /**
     * @param pool       the shared I/O pool
     * @param maxRunning most requests of this lane running or queued in the pool at once
     */
    FairLane(Executor pool, int maxRunning) {
        if (maxRunning < 1) {
            throw new IllegalArgumentException("maxRunning: " + maxRunning + " (expected: >= 1)");
        }
        this.pool = pool;
        this.maxRunning = maxRunning;
    }

    @Override
    public void execute(Runnable task) {
        tasks.add(task);
        try {
            schedule();
        } catch (RejectedExecutionException e) {
            if (tasks.remove(task)) {
                throw e;
            }
            // A runner already took it: it runs.
        }
    }

    /** Submits runners while tasks wait and fewer than maxRunning are out. */
    private void schedule() {
        while (!tasks.isEmpty()) {
            int r = runners.get();
            if (r >= maxRunning) {
                return;   // a runner finishing will look again
            }
            if (runners.compareAndSet(r, r + 1)) {
                try {
                    pool.execute(runner);
                } catch (RejectedExecutionException e) {
                    runners.decrementAndGet();
                    throw e;
                }
            }
        }
    }

    private void runOne() {
        Runnable t = tasks.poll();
        try {
            if (t != null) {
                t.run();
            }
        } finally {
            runners.decrementAndGet();
            try {
                schedule();
            } catch (RejectedExecutionException e) {
                drainHere();
            }
        }
    }

    /** The pool is stopping: what this lane accepted runs on the current (pool) thread. */
    private void drainHere() {
        for (Runnable t = tasks.poll(); t != null; t = tasks.poll()) {
            t.run();
        }
    }

    /** Tasks accepted and not yet started (tests). */
    int queued() {
        return tasks.size();
    }
}
