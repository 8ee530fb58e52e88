package dev.shear.qcow2;

import java.util.List;

/**
 * What {@link Qcow2Check} found, with the counters and statistics of {@code qemu-img check}
 * (qcow2-format.md §12; QEMU {@code BdrvCheckResult} and {@code qemu-img.c collect_image_check}).
 *
 * @param corruptions        inconsistencies that may lose data: a refcount lower than the references,
 *                           broken or misaligned metadata, wrong copied flags
 * @param leaks              clusters whose refcount is higher than their references (wasted space)
 * @param checkErrors        places the check could not examine (unreadable refcounts or metadata)
 * @param corruptionsFixed   always 0: the check is read-only (kept for qemu-img's JSON shape)
 * @param leaksFixed         always 0: the check is read-only
 * @param imageEndOffset     {@code (highest cluster with a refcount or a reference + 1) * cluster_size}
 * @param totalClusters      guest clusters of the virtual disk ({@code ceil(size / cluster_size)})
 * @param allocatedClusters  guest clusters of the active image with host storage (normal, zero with
 *                           preallocation, compressed); snapshots are not counted
 * @param fragmentedClusters of those, the ones not contiguous with the previous one of the same L2
 *                           table, plus every compressed cluster (QEMU's definition)
 * @param compressedClusters of those, the compressed ones
 * @param messages           one line per finding, in qemu-img's words and order (possibly truncated:
 *                           see {@link Qcow2Check#MAX_KEPT_MESSAGES})
 * @param failure            null when the check ran to the end; otherwise why it stopped (qemu-img:
 *                           "Check failed: ..."), in which case the counters are partial and the
 *                           exit code is 1
 */
public record CheckResult(long corruptions, long leaks, long checkErrors, long corruptionsFixed,
        long leaksFixed, long imageEndOffset, long totalClusters, long allocatedClusters,
        long fragmentedClusters, long compressedClusters, List<String> messages, String failure) {

    /** No problem found. */
    public static final int EXIT_CLEAN = 0;
    /** The check could not complete, or hit errors it could not examine. */
    public static final int EXIT_CHECK_ERRORS = 1;
    /** Corruptions (possibly with leaks). */
    public static final int EXIT_CORRUPTIONS = 2;
    /** Leaks only. */
    public static final int EXIT_LEAKS = 3;
    /** The format has no consistency check (raw), as qemu-img exits. */
    public static final int EXIT_NOT_SUPPORTED = 63;

    public CheckResult {
        messages = List.copyOf(messages);
    }

    /** True if the check ran to the end (no {@link #failure()}). */
    public boolean completed() {
        return failure == null;
    }

    /** True if nothing at all was found. */
    public boolean isClean() {
        return completed() && corruptions == 0 && leaks == 0 && checkErrors == 0;
    }

    /**
     * The exit status of {@code qemu-img check} for this result: 1 when the check failed or had
     * check errors (even with corruptions), else 2 with corruptions, else 3 with leaks, else 0.
     */
    public int exitCode() {
        if (failure != null || checkErrors != 0) {
            return EXIT_CHECK_ERRORS;
        }
        if (corruptions != 0) {
            return EXIT_CORRUPTIONS;
        }
        return leaks != 0 ? EXIT_LEAKS : EXIT_CLEAN;
    }
}
