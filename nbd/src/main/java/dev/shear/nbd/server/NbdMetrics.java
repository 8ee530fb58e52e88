package dev.shear.nbd.server;

import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.LongAdder;

/**
 * Process-wide NBD request counters for the control API's {@code /metrics}: requests and bytes per
 * command, and a latency histogram of every request (Prometheus buckets, seconds). Lock-free adders;
 * one {@link #record} per request on the I/O pool.
 */
public final class NbdMetrics {
    /** Command names by NBD_CMD_* code (0..7); others count as "other". */
    public static final String[] COMMANDS = {"read", "write", "disc", "flush", "trim", "cache", "write_zeroes",
        "block_status", "other"};
    /** Upper bounds of the latency buckets, in seconds. */
    public static final double[] BUCKETS = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};

    private static final LongAdder[] REQUESTS = adders(COMMANDS.length);
    private static final LongAdder[] BYTES = adders(COMMANDS.length);
    private static final AtomicLongArray HISTOGRAM = new AtomicLongArray(BUCKETS.length + 1);
    private static final LongAdder LATENCY_NANOS = new LongAdder();

    private NbdMetrics() {
    }

    private static LongAdder[] adders(int n) {
        LongAdder[] a = new LongAdder[n];
        for (int i = 0; i < n; i++) {
            a[i] = new LongAdder();
        }
        return a;
    }

    /** Counts one request of command {@code type} moving {@code bytes} of data, taking {@code nanos}. */
    static void record(int type, long bytes, long nanos) {
        int i = type >= 0 && type < COMMANDS.length - 1 ? type : COMMANDS.length - 1;
        REQUESTS[i].increment();
        BYTES[i].add(bytes);
        LATENCY_NANOS.add(nanos);
        double s = nanos / 1e9;
        int b = 0;
        while (b < BUCKETS.length && s > BUCKETS[b]) {
            b++;
        }
        HISTOGRAM.incrementAndGet(b);
    }

    public static long requests(int command) {
        return REQUESTS[command].sum();
    }

    public static long bytes(int command) {
        return BYTES[command].sum();
    }

    /** Non-cumulative count of bucket {@code i} ({@code BUCKETS.length} is +Inf). */
    public static long bucket(int i) {
        return HISTOGRAM.get(i);
    }

    public static double latencySumSeconds() {
        return LATENCY_NANOS.sum() / 1e9;
    }
}
