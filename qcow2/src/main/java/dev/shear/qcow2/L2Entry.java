package dev.shear.qcow2;

/**
 * Static helpers over L2 table entries (qcow2-format.md §6.1-§6.5): classification, compressed
 * descriptor arithmetic, extended-L2 subcluster bitmaps and validation.
 *
 * <p>Standard cluster ({@code C} copied: refcount == 1; {@code Z} reads as zero, v3 without
 * extended L2 only):
 * <pre>
 *  63 | 62 | 61 .. 56 | 55 ................ 9 | 8 .. 1   | 0
 *  C  | 0  | reserved | host cluster offset   | reserved | Z
 * </pre>
 * Compressed cluster, with {@code x = 62 - (cluster_bits - 8)}:
 * <pre>
 *  63 | 62 | 61 ........... x | x-1 ................ 0
 *  0  | 1  | extra sectors    | host byte offset (bits 56.. must be 0)
 * </pre>
 * Extended L2 subcluster bitmap (second 64 bits): bits 0-31 allocated, bits 32-63 reads as zero.
 */
final class L2Entry {
    /** Bits 9-55: host cluster offset (QEMU L2E_OFFSET_MASK). */
    static final long OFFSET_MASK = 0x00fffffffffffe00L;
    /** Bits 1-8 and 56-61 of a standard entry (QEMU L2E_STD_RESERVED_MASK). */
    static final long STD_RESERVED_MASK = 0x3f000000000001feL;
    /** Bit 63: refcount == 1; never on compressed entries. */
    static final long COPIED = 1L << 63;
    /** Bit 62: compressed descriptor. */
    static final long COMPRESSED = 1L << 62;
    /** Bit 0: reads as zero (standard entries, v3, no extended L2). */
    static final long ZERO = 1L;
    /** Subclusters per cluster with extended L2. */
    static final int SUBCLUSTERS = 32;
    /** Allocation half of the subcluster bitmap. */
    static final long ALL_ALLOC = 0x00000000ffffffffL;
    /** Zero half of the subcluster bitmap. */
    static final long ALL_ZEROES = 0xffffffff00000000L;
    /** Compressed host offsets live below 2^56 like every host offset (§13). */
    private static final long MAX_HOST_OFFSET_MASK = 0x00ffffffffffffffL;
    /** Compressed data is counted in 512-byte sectors whatever the cluster size. */
    private static final int SECTOR = 512;

    private L2Entry() {
    }

    /** Host cluster offset of a standard entry. */
    static long offset(long entry) {
        return entry & OFFSET_MASK;
    }

    static boolean isCompressed(long entry) {
        return (entry & COMPRESSED) != 0;
    }

    /** Bit 0 of a standard entry (meaningless for compressed entries). */
    static boolean isZeroFlag(long entry) {
        return !isCompressed(entry) && (entry & ZERO) != 0;
    }

    static boolean isCopied(long entry) {
        return (entry & COPIED) != 0;
    }

    /** Set reserved bits of a standard entry; 0 for compressed entries (see {@link #problem}). */
    static long reservedBits(long entry) {
        return isCompressed(entry) ? 0 : entry & STD_RESERVED_MASK;
    }

    /** x of §6.4: where the sector count starts. */
    static int csizeShift(int clusterBits) {
        return 62 - (clusterBits - 8);
    }

    /** Width mask of the additional-sectors field. */
    static long csizeMask(int clusterBits) {
        return (1L << (clusterBits - 8)) - 1;
    }

    /** Host byte offset of compressed data (not aligned). */
    static long compressedOffset(long entry, int clusterBits) {
        return entry & ((1L << csizeShift(clusterBits)) - 1);
    }

    /** 512-byte sectors the compressed data touches, counted from the sector holding its start. */
    static int compressedSectors(long entry, int clusterBits) {
        return (int) (((entry >>> csizeShift(clusterBits)) & csizeMask(clusterBits)) + 1);
    }

    /**
     * Bytes to read from {@link #compressedOffset}: {@code nb_sectors * 512 - (coffset & 511)}
     * (§6.4, §15.1). May include the start of a neighbour's data; the decompressor stops at one cluster.
     */
    static int compressedSectorsBytes(long entry, int clusterBits) {
        return compressedSectors(entry, clusterBits) * SECTOR
                - (int) (compressedOffset(entry, clusterBits) & (SECTOR - 1));
    }

    /** Start of the sector range the compressed data occupies (for refcounts, §6.4). */
    static long compressedRangeStart(long entry, int clusterBits) {
        return compressedOffset(entry, clusterBits) & ~(long) (SECTOR - 1);
    }

    /** Length of that sector range. */
    static long compressedRangeLength(long entry, int clusterBits) {
        return (long) compressedSectors(entry, clusterBits) * SECTOR;
    }

    /**
     * A compressed entry for {@code length} bytes at {@code hostOffset}:
     * {@code additional = (coffset + len - 1) / 512 - coffset / 512}.
     *
     * @throws IllegalArgumentException if the offset or length does not fit the fields
     */
    static long compressed(long hostOffset, int length, int clusterBits) {
        int shift = csizeShift(clusterBits);
        if (hostOffset < 0 || hostOffset >= (1L << shift) || (hostOffset & ~MAX_HOST_OFFSET_MASK) != 0) {
            throw new IllegalArgumentException(String.format("compressed offset: 0x%x (expected: < 2^%d)",
                    hostOffset, Math.min(shift, 56)));
        }
        if (length <= 0) {
            throw new IllegalArgumentException("compressed length: " + length + " (expected: > 0)");
        }
        long additional = (hostOffset + length - 1) / SECTOR - hostOffset / SECTOR;
        if (additional > csizeMask(clusterBits)) {
            throw new IllegalArgumentException("compressed length: " + length + " (expected: <= "
                    + (csizeMask(clusterBits) * SECTOR + 1) + " sectors' worth at this offset)");
        }
        return COMPRESSED | (additional << shift) | hostOffset;
    }

    /** A standard entry for a host cluster. */
    static long standard(long hostOffset, boolean copied) {
        if ((hostOffset & ~OFFSET_MASK) != 0) {
            throw new IllegalArgumentException(String.format("host offset: 0x%x (expected: bits 9-55 only)",
                    hostOffset));
        }
        return hostOffset | (copied ? COPIED : 0);
    }

    /** Classification per QEMU qcow2_get_cluster_type (no external data file: refused at open). */
    static ClusterType type(long entry, boolean extendedL2) {
        if (isCompressed(entry)) {
            return ClusterType.COMPRESSED;
        }
        if ((entry & ZERO) != 0 && !extendedL2) {
            return offset(entry) != 0 ? ClusterType.ZERO_ALLOC : ClusterType.ZERO_PLAIN;
        }
        return offset(entry) == 0 ? ClusterType.UNALLOCATED : ClusterType.NORMAL;
    }

    /** Allocation bits of a subcluster bitmap, bit i = subcluster i. */
    static int allocMask(long bitmap) {
        return (int) bitmap;
    }

    /** Zero bits of a subcluster bitmap, bit i = subcluster i. */
    static int zeroMask(long bitmap) {
        return (int) (bitmap >>> 32);
    }

    /** True when some subcluster is both allocated and zero. */
    static boolean hasAllocZeroOverlap(long bitmap) {
        return (allocMask(bitmap) & zeroMask(bitmap)) != 0;
    }

    /**
     * Subcluster {@code index} of an extended L2 entry, per QEMU qcow2_get_subcluster_type (§6.5).
     * Bit 0 of {@code entry} is ignored, as extended L2 has no cluster-level zero flag.
     */
    static SubclusterType subclusterType(long entry, long bitmap, int index) {
        if (index < 0 || index >= SUBCLUSTERS) {
            throw new IllegalArgumentException("subcluster index: " + index + " (expected: 0..31)");
        }
        int bit = 1 << index;
        return switch (type(entry, true)) {
            case COMPRESSED -> SubclusterType.COMPRESSED;
            case NORMAL -> hasAllocZeroOverlap(bitmap) ? SubclusterType.INVALID
                    : (zeroMask(bitmap) & bit) != 0 ? SubclusterType.ZERO_ALLOC
                    : (allocMask(bitmap) & bit) != 0 ? SubclusterType.NORMAL
                    : SubclusterType.UNALLOCATED_ALLOC;
            case UNALLOCATED -> allocMask(bitmap) != 0 ? SubclusterType.INVALID
                    : (zeroMask(bitmap) & bit) != 0 ? SubclusterType.ZERO_PLAIN
                    : SubclusterType.UNALLOCATED_PLAIN;
            case ZERO_PLAIN, ZERO_ALLOC -> throw new AssertionError("no zero clusters with extended L2");
        };
    }

    /**
     * What is wrong with an L2 entry, or null when it is well-formed. The checks are those of QEMU's
     * qcow2_signal_corruption sites and qemu-img check (§6.2-§6.5, §12): reserved bits, unaligned host
     * offset, zero flag in a v2 image or with extended L2, copied flag or a subcluster bitmap on a
     * compressed entry, compressed offset at or above 2^56, contradictory subcluster bitmap.
     *
     * <p>Shape: {@code "<what>: <value> (expected: <constraint>)"}, without location; callers
     * prefix it ({@code "L2 entry 17 at 0x50000: "}) because only they know the index and table.
     *
     * @param bitmap the subcluster bitmap (ignored unless {@code extendedL2})
     */
    static String problem(long entry, long bitmap, int clusterBits, boolean extendedL2, int version) {
        if (isCompressed(entry)) {
            if (isCopied(entry)) {
                return String.format("copied flag: set on compressed entry 0x%016x (expected: clear)", entry);
            }
            long coffset = compressedOffset(entry, clusterBits);
            if ((coffset & ~MAX_HOST_OFFSET_MASK) != 0) {
                return String.format("compressed offset: 0x%x (expected: < 2^56)", coffset);
            }
            if (extendedL2 && bitmap != 0) {
                return String.format("subcluster bitmap: 0x%016x (expected: 0 for a compressed cluster)", bitmap);
            }
            return null;
        }
        long reserved = entry & STD_RESERVED_MASK;
        if (reserved != 0) {
            return String.format("reserved bits: 0x%x (expected: 0)", reserved);
        }
        long offset = offset(entry);
        if ((offset & ((1L << clusterBits) - 1)) != 0) {
            return String.format("host offset: 0x%x (expected: cluster-aligned)", offset);
        }
        if ((entry & ZERO) != 0) {
            if (version < 3) {
                return "zero flag: set (expected: clear in a version 2 image)";
            }
            if (extendedL2) {
                return "zero flag: set (expected: clear with extended L2 entries)";
            }
        }
        if (extendedL2) {
            if (hasAllocZeroOverlap(bitmap)) {
                return String.format("subcluster bitmap: 0x%016x (expected: no subcluster both allocated and zero)",
                        bitmap);
            }
            if (offset == 0 && allocMask(bitmap) != 0) {
                return String.format("subcluster bitmap: 0x%016x (expected: no allocated subcluster without "
                        + "a host offset)", bitmap);
            }
        }
        return null;
    }
}
