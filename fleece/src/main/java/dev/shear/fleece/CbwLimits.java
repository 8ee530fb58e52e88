package dev.shear.fleece;

import java.time.Duration;
import java.util.Objects;

/**
 * Named limits of copy-before-write, each with its reason (dirty-bitmaps.md §8.2).
 *
 * @param cbwTimeout     longest time one guest request may spend copying old data before the
 *                       {@link CbwPolicy} applies as if the copy had failed; {@link Duration#ZERO}
 *                       means no limit (QEMU {@code cbw-timeout}, default 0). See
 *                       {@link CopyBeforeWrite} for what is and is not interruptible.
 * @param minClusterSize lower bound of the copy granularity (QEMU {@code min-cluster-size}); the
 *                       granularity is the larger of this and the live device's preferred block size
 */
public record CbwLimits(Duration cbwTimeout, int minClusterSize) {

    /**
     * Smallest copy granularity, as QEMU's block-copy: below 64 KiB the per-cluster bookkeeping (a
     * lock round, a block-status query, an index entry) costs more than the bytes it saves.
     */
    public static final int MIN_CLUSTER_SIZE = 64 * 1024;

    /**
     * Largest copy granularity: every writing thread keeps one cluster-sized copy buffer, and a 4 KiB
     * guest write copies a whole cluster first; 64 MiB is already far beyond any qcow2 cluster (2 MiB).
     */
    public static final int MAX_CLUSTER_SIZE = 64 << 20;

    /** No timeout, 64 KiB minimum granularity. */
    public static final CbwLimits DEFAULT = new CbwLimits(Duration.ZERO, MIN_CLUSTER_SIZE);

    public CbwLimits {
        Objects.requireNonNull(cbwTimeout, "cbwTimeout");
        if (cbwTimeout.isNegative()) {
            throw new IllegalArgumentException("cbwTimeout: " + cbwTimeout + " (expected: >= 0)");
        }
        if (Integer.bitCount(minClusterSize) != 1 || minClusterSize < MIN_CLUSTER_SIZE
                || minClusterSize > MAX_CLUSTER_SIZE) {
            throw new IllegalArgumentException("minClusterSize: " + minClusterSize + " (expected: a power of two in "
                    + MIN_CLUSTER_SIZE + ".." + MAX_CLUSTER_SIZE + ")");
        }
    }

    public CbwLimits withCbwTimeout(Duration timeout) {
        return new CbwLimits(timeout, minClusterSize);
    }

    public CbwLimits withMinClusterSize(int size) {
        return new CbwLimits(cbwTimeout, size);
    }

    /** The timeout in nanoseconds, or 0 for none. */
    long timeoutNanos() {
        return cbwTimeout.isZero() ? 0 : cbwTimeout.toNanos();
    }
}
