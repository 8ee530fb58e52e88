package dev.shear.qcow2;

/**
 * One run of guest bytes with the same mapping, as {@link ClusterMapper} finds it: the internal,
 * finer form of {@link ClusterMapping} (it keeps ZERO_PLAIN apart from ZERO_ALLOC and the host offset
 * of UNALLOCATED_ALLOC subclusters, which block status reports as QEMU does).
 *
 * <p>Mutable so that the read path allocates nothing per lookup: {@link ClusterMapper#lookup(long, long,
 * ClusterRun)} fills a caller-owned instance (one per thread in {@link Qcow2Image#read}). An instance
 * is not shared between threads; copy the fields out before anything may reuse it.
 *
 * <ul>
 *   <li>{@code kind}: what the run is</li>
 *   <li>{@code guestOffset}: first guest byte</li>
 *   <li>{@code length}: bytes, &gt; 0; never crosses an L2 table's reach, a compressed run never crosses
 *       its cluster</li>
 *   <li>{@code hostOffset}: host byte of {@code guestOffset} for DATA, ZERO_ALLOC and UNALLOCATED_ALLOC
 *       (the run is host-contiguous); the compressed data's offset for COMPRESSED; else -1</li>
 *   <li>{@code compressedBytes}: bytes to read from {@code hostOffset} for COMPRESSED (csize), else 0</li>
 * </ul>
 */
final class ClusterRun {

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

    private Kind kind;
    private long guestOffset;
    private long length;
    private long hostOffset;
    private int compressedBytes;

    /** An empty run, to be filled by {@link #set}. */
    ClusterRun() {
    }

    ClusterRun(Kind kind, long guestOffset, long length, long hostOffset, int compressedBytes) {
        set(kind, guestOffset, length, hostOffset, compressedBytes);
    }

    /** Overwrites every field; returns this. */
    ClusterRun set(Kind kind, long guestOffset, long length, long hostOffset, int compressedBytes) {
        this.kind = kind;
        this.guestOffset = guestOffset;
        this.length = length;
        this.hostOffset = hostOffset;
        this.compressedBytes = compressedBytes;
        return this;
    }

    Kind kind() {
        return kind;
    }

    long guestOffset() {
        return guestOffset;
    }

    long length() {
        return length;
    }

    long hostOffset() {
        return hostOffset;
    }

    int compressedBytes() {
        return compressedBytes;
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

    @Override
    public String toString() {
        return "ClusterRun[kind=" + kind + ", guestOffset=" + guestOffset + ", length=" + length + ", hostOffset="
                + hostOffset + ", compressedBytes=" + compressedBytes + "]";
    }
}
