package dev.shear.qcow2;

/**
 * What a guest cluster's L2 entry says about it, as QEMU's qcow2_get_cluster_type classifies it
 * (qcow2-format.md §6.3). With extended L2, ZERO_* never occurs at cluster level: zeroes live in
 * the subcluster bitmap ({@link SubclusterType}).
 */
enum ClusterType {
    /** Offset 0, no zero flag: read the backing file, or zeros without one. */
    UNALLOCATED,
    /** Zero flag, offset 0: reads as zeros, hides the backing file. */
    ZERO_PLAIN,
    /** Zero flag with a preallocated host cluster whose stale content must never be returned. */
    ZERO_ALLOC,
    /** Host cluster data. */
    NORMAL,
    /** Compressed data at a byte offset (§6.4). */
    COMPRESSED
}
