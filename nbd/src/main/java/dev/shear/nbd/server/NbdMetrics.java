package dev.shear.nbd.server;

import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.LongAdder;

/**
 * Process-wide NBD request counters for the control API's {@code /metrics}: requests and bytes per
 * command, and three latency histograms (Prometheus buckets, seconds) that split a request's time in
 * the server into its parts:
 * <ul>
 *   <li>{@link #QUEUE}: from its decoding on the event loop to the start of its execution on the I/O
 *       pool (waiting for a pool thread, and for that thread to be scheduled);</li>
 *   <li>{@link #EXECUTE}: its execution on the I/O pool (the device call and building the reply);</li>
 *   <li>{@link #REPLY}: from the end of its execution to its last reply written to the socket (the hand-off
 *       back to the event loop, and the replies queued there before it).</li>
 * </ul>
 * On a CPU-starved host the two hand-offs, not the device, made most of the slowest writes' latency
 * (2 cores under fleece-anchor: about 1.5 + 2 + 2 ms in the slowest 1 %), hence the split. Lock-free.
 */
public final class NbdMetrics {
    /** Command names by NBD_CMD_* code (0..7); others count as "other". */
    public static final String[] COMMANDS = {"read", "write", "disc", "flush", "trim", "cache", "write_zeroes",
        "block_status", "other"};
    /** Upper bounds of the latency buckets, in seconds. */
    public static final double[] BUCKETS = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};

    /** Decoding to the start of execution. */
    public static final Histogram QUEUE = new Histogram();
    /** Execution on the I/O pool. */
    public static final Histogram EXECUTE = new Histogram();
    /** End of execution to the last reply written. */
    public static final Histogram REPLY = new Histogram();

    private static final LongAdder[] REQUESTS = adders(COMMANDS.length);
    private static final LongAdder[] BYTES = adders(COMMANDS.length);

    private NbdMetrics() {
    }

    private static LongAdder[] adders(int n) {
        LongAdder[] a = new LongAdder[n];
        for (int i = 0; i < n; i++) {
            a[i] = new LongAdder();
        }
        return a;
    }

    /** Counts one request of command {@code type} moving {@code bytes} of data, executed in {@code nanos}. */
    static void record(int type, long bytes, long nanos) {
        int i = type >= 0 && type < COMMANDS.length - 1 ? type : COMMANDS.length - 1;
        REQUESTS[i].increment();
        BYTES[i].add(bytes);
        EXECUTE.record(nanos);
    }

    public static long requests(int command) {
        return REQUESTS[command].sum();
    }

    public static long bytes(int command) {
        return BYTES[command].sum();
    }

    /** One latency histogram with the {@link #BUCKETS} bounds. */
    public static final class Histogram {
        private final AtomicLongArray counts = new AtomicLongArray(BUCKETS.length + 1);
        private final LongAdder nanos = new LongAdder();

        void record(long n) {
            nanos.add(n);
            double s = n / 1e9;
            int b = 0;
            while (b < BUCKETS.length && s > BUCKETS[b]) {
                b++;
            }
            counts.incrementAndGet(b);
        }

        /** Non-cumulative count of bucket {@code i} ({@code BUCKETS.length} is +Inf). */
        public long bucket(int i) {
            return counts.get(i);
        }

        public double sumSeconds() {
            return nanos.sum() / 1e9;
        }
    }
}
