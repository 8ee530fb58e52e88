package dev.shear.nbd.server;

import java.util.AbstractQueue;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The I/O pool's work queue: two FIFO classes, foreground before background, with a share kept for
 * background work so that it never starves.
 *
 * <p>Background tasks are those marked {@link Background}: requests on backup snapshot exports. While a
 * backup client reads with dozens of requests in flight, a guest's write on the live export would
 * otherwise wait in the queue behind all of the reads queued before it (measured on 2 cores under
 * fleece-anchor: 1.6-1.9 ms of queueing in the slowest 1% of writes, a third of their latency). Taking
 * foreground first bounds that wait by the reads already running. Fairness: after
 * {@value #FOREGROUND_BURST} foreground tasks in a row taken while background work was waiting, the next
 * take is a background one; so a guest writing flat out slows a backup down without stopping it.
 *
 * <p>Unbounded, like the {@code LinkedBlockingQueue} it replaces: the server bounds what is queued by its
 * per-connection in-flight limits ({@link FairLane}). Iteration sees a snapshot: removing through the
 * iterator does not touch the queue (the pool iterates only in {@code purge}, which Shear never calls).
 */
final class ForegroundFirstQueue extends AbstractQueue<Runnable> implements BlockingQueue<Runnable> {
    /** Marks a task as background work. */
    interface Background extends Runnable {
    }

    /** Foreground tasks taken in a row, while background work waits, before one background task. */
    static final int FOREGROUND_BURST = 8;

    private final ReentrantLock lock = new ReentrantLock();
    private final Condition notEmpty = lock.newCondition();
    /** Guarded by lock. */
    private final ArrayDeque<Runnable> foreground = new ArrayDeque<>();
    /** Guarded by lock. */
    private final ArrayDeque<Runnable> background = new ArrayDeque<>();
    /** Foreground tasks taken since background work last got a turn; guarded by lock. */
    private int burst;

    @Override
    public boolean offer(Runnable task) {
        if (task == null) {
            throw new NullPointerException("task");
        }
        lock.lock();
        try {
            (task instanceof Background ? background : foreground).addLast(task);
            notEmpty.signal();
            return true;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void put(Runnable task) {
        offer(task);
    }

    @Override
    public boolean offer(Runnable task, long timeout, TimeUnit unit) {
        return offer(task);
    }

    /** Whether the next take is a background task. Caller holds lock. */
    private boolean backgroundTurn() {
        return !background.isEmpty() && (foreground.isEmpty() || burst >= FOREGROUND_BURST);
    }

    /** The next task by the class rule; null when both are empty. Caller holds lock. */
    private Runnable next() {
        if (backgroundTurn()) {
            burst = 0;
            return background.pollFirst();
        }
        if (!background.isEmpty()) {
            burst++;
        }
        return foreground.pollFirst();
    }

    @Override
    public Runnable poll() {
        lock.lock();
        try {
            return next();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public Runnable take() throws InterruptedException {
        lock.lockInterruptibly();
        try {
            Runnable t;
            while ((t = next()) == null) {
                notEmpty.await();
            }
            return t;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public Runnable poll(long timeout, TimeUnit unit) throws InterruptedException {
        long nanos = unit.toNanos(timeout);
        lock.lockInterruptibly();
        try {
            Runnable t;
            while ((t = next()) == null) {
                if (nanos <= 0) {
                    return null;
                }
                nanos = notEmpty.awaitNanos(nanos);
            }
            return t;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public Runnable peek() {
        lock.lock();
        try {
            return backgroundTurn() ? background.peekFirst() : foreground.peekFirst();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public int size() {
        lock.lock();
        try {
            return foreground.size() + background.size();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public int remainingCapacity() {
        return Integer.MAX_VALUE;
    }

    @Override
    public boolean remove(Object o) {
        lock.lock();
        try {
            return foreground.remove(o) || background.remove(o);
        } finally {
            lock.unlock();
        }
    }

    @Override
    public int drainTo(Collection<? super Runnable> c) {
        return drainTo(c, Integer.MAX_VALUE);
    }

    @Override
    public int drainTo(Collection<? super Runnable> c, int maxElements) {
        lock.lock();
        try {
            int n = 0;
            Runnable t;
            while (n < maxElements && (t = next()) != null) {
                c.add(t);
                n++;
            }
            return n;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public Iterator<Runnable> iterator() {
        lock.lock();
        try {
            List<Runnable> all = new ArrayList<>(foreground);
            all.addAll(background);
            return all.iterator();
        } finally {
            lock.unlock();
        }
    }
}
