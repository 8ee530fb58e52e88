package dev.shear.qcow2;

/**
 * One run of guest bytes with the same mapping, as {@link ClusterMapper} finds it: the internal,
 * finer form of {@link ClusterMapping} (it keeps ZERO_PLAIN apart from ZERO_ALLOC and the host offset
 * of UNALLOCATED_ALLOC subclusters, which block status reports as QEMU does).
 *
 * @param kind        what the run is
 * @param guestOffset first guest byte
 * @param length      bytes, &gt; 0; never crosses an L2 table's reach, a compressed run never crosses
 *                    its cluster
 * @param hostOffset  host byte of {@code guestOffset} for DATA, ZERO_ALLOC and UNALLOCATED_ALLOC (the
 *                    run is host-contiguous); the compressed data's offset for COMPRESSED; else -1
 * @param compressedBytes bytes to read from {@code hostOffset} for COMPRESSED (csize), else 0
 */
record ClusterRun(Kind kind, long guestOffset, long length, long hostOffset, int compressedBytes) {

    enum Kind {
        /** Host data (NORMAL cluster or subclusters). */
        DATA,
        /** Reads as zeros, no host space (zero flag with offset 0, or zero bits of an unallocated entry). */
        ZERO_PLAIN,
        /** Reads as zeros; a host cluster is reserved but its bytes are stale. */
        ZERO_ALLOC,
        /** Not allocated here: backing file or zeros. */
        UNALLOCATED,
        /** Not allocated here, host space reserved (extended L2 subclusters with neither bit). */
        UNALLOCATED_ALLOC,
        /** Inside one compressed cluster. */
        COMPRESSED
    }

    long end() {
        return guestOffset + length;
    }

    /** The public, coarser mapping. */
    ClusterMapping toMapping() {
        return switch (kind) {
            case DATA -> new ClusterMapping.Data(hostOffset, length);
            case ZERO_PLAIN -> new ClusterMapping.Zero(length, -1);
            case ZERO_ALLOC -> new ClusterMapping.Zero(length, hostOffset);
            case UNALLOCATED, UNALLOCATED_ALLOC -> new ClusterMapping.Unallocated(length);
            case COMPRESSED -> new ClusterMapping.Compressed(hostOffset, compressedBytes);
        };
    }
}
