package dev.shear.fleece;

/**
 * Counters of one snapshot, for job progress and tests; a consistent-enough reading, not atomic.
 *
 * @param clusterSize      copy granularity in bytes
 * @param clusterCount     clusters of the device
 * @param coveredClusters  clusters the snapshot exposes (all, or the incremental selection)
 * @param copiedClusters   clusters whose old data was copied to the scratch target
 * @param zeroClusters     clusters found zero/hole on the live device at their first write (not copied)
 * @param releasedClusters clusters the snapshot client discarded
 * @param abandonedClusters clusters written without a copy after the snapshot broke
 * @param copiedBytes      bytes read from the live device and handed to the scratch target
 * @param scratchUsedBytes space the scratch target uses now
 * @param brokenReason     why the snapshot broke, or null
 */
public record SnapshotStats(
        int clusterSize,
        long clusterCount,
        long coveredClusters,
        long copiedClusters,
        long zeroClusters,
        long releasedClusters,
        long abandonedClusters,
        long copiedBytes,
        long scratchUsedBytes,
        String brokenReason) {

    public boolean broken() {
        return brokenReason != null;
    }
}
