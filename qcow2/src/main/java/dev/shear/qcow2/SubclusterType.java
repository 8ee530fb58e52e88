package dev.shear.qcow2;

/**
 * State of one subcluster of an extended L2 entry (qcow2-format.md §6.5), as QEMU's
 * qcow2_get_subcluster_type defines it.
 */
enum SubclusterType {
    /** Unallocated cluster, subcluster not zero: backing file or zeros. */
    UNALLOCATED_PLAIN,
    /** Allocated cluster, subcluster neither allocated nor zero: backing file; host space reserved. */
    UNALLOCATED_ALLOC,
    /** Unallocated cluster, zero bit set: zeros. */
    ZERO_PLAIN,
    /** Allocated cluster, zero bit set: zeros (host bytes are stale). */
    ZERO_ALLOC,
    /** Allocated cluster, allocation bit set: host data. */
    NORMAL,
    /** Compressed cluster: no subclusters. */
    COMPRESSED,
    /** Contradictory bitmap: corruption. */
    INVALID
}
