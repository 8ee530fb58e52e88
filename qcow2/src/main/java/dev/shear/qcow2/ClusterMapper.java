package dev.shear.qcow2;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Translates guest offsets to {@link ClusterRun}s through one L1 table and its L2 tables
 * (qcow2-format.md §6; QEMU {@code qcow2_get_host_offset} and {@code count_contiguous_subclusters}).
 *
 * <p>Design notes:
 * <ul>
 *   <li>A lookup answers for the longest run, starting at the guest offset, of clusters (or
 *       subclusters) of the same kind, host-contiguous where the kind has host space, within one L2
 *       table's reach: cost is proportional to the L2 entries visited. Empty L1 entries are skipped
 *       in one step, however many there are.</li>
 *   <li>Entries are validated where they are used ({@link L2Entry#problem}): a bad first entry fails
 *       the lookup with CORRUPT_IMAGE naming the guest offset, the table and the entry's file offset;
 *       a bad later entry merely ends the run, so the failure belongs to the range that needs it and
 *       other ranges keep working.</li>
 *   <li>Stateless apart from the shared {@link MetadataCache} and the L1 array. A writable image changes
 *       both only under its metadata write lock and calls {@link #lookup} under the read lock, so
 *       lookups run concurrently with each other and never see a half-made change.</li>
 * </ul>
 */
final class ClusterMapper {
    private final ImageFile file;
    private final String resource;
    private final int clusterBits;
    private final int clusterSize;
    private final int version;
    private final boolean extendedL2;
    private final int l2Bits;              // log2 of entries per L2 table
    private final int entryBytes;          // 8, or 16 with extended L2
    private final long[] l1;               // guarded by the image's metadata lock (shared with MetadataWriter)
    private final long l1TableOffset;      // for messages
    private final MetadataCache cache;
    private final MetadataCache.Loader l2Loader = this::loadL2;   // one instance, not one per lookup

    ClusterMapper(ImageFile file, String resource, Qcow2Header header, long[] l1, long l1TableOffset,
                  MetadataCache cache) {
        this.file = file;
        this.resource = resource;
        this.clusterBits = header.clusterBits();
        this.clusterSize = 1 << clusterBits;
        this.version = header.version();
        this.extendedL2 = header.hasExtendedL2();
        this.l2Bits = header.l2Bits();
        this.entryBytes = extendedL2 ? 16 : 8;
        this.l1 = l1;
        this.l1TableOffset = l1TableOffset;
        this.cache = cache;
    }

    /**
     * The run starting at {@code guestOffset}.
     *
     * <p>On entry: {@code guestOffset >= 0}, {@code maxLength > 0} (the caller bounds both by the
     * disk size). On exit: a run of 1..maxLength bytes starting at {@code guestOffset}; only metadata
     * was read.
     *
     * @throws BlockException CORRUPT_IMAGE for a bad L1 entry or a bad L2 entry at {@code guestOffset};
     *                        IO if the L2 table cannot be read
     */
    ClusterRun lookup(long guestOffset, long maxLength) throws IOException {
        return lookup(guestOffset, maxLength, new ClusterRun());
    }

    /** As {@link #lookup(long, long)}, filling and returning the caller's {@code out} (no allocation). */
    ClusterRun lookup(long guestOffset, long maxLength, ClusterRun out) throws IOException {
        int l2Shift = clusterBits + l2Bits;
        long l1Index = guestOffset >>> l2Shift;
        long reach = ((l1Index + 1) << l2Shift) - guestOffset;
        if (l1Index >= l1.length || l1[(int) l1Index] == 0) {
            // Unallocated L2 table(s): one step covers every consecutive empty L1 entry.
            long length = reach;
            long i = l1Index + 1;
            while (length < maxLength && i < l1.length && l1[(int) i] == 0) {
                length += 1L << l2Shift;
                i++;
            }
            if (i >= l1.length) {
                length = maxLength;   // beyond the L1 table nothing is allocated (QEMU: UNALLOCATED_PLAIN)
            }
            return out.set(ClusterRun.Kind.UNALLOCATED, guestOffset, Math.min(length, maxLength), -1, 0);
        }
        long l1Entry = l1[(int) l1Index];
        String problem = L1Entry.problem(l1Entry, clusterBits);
        if (problem != null) {
            throw BlockException.corrupt(resource, l1TableOffset + l1Index * 8,
                    "L1 entry %d (guest offset 0x%x): %s", l1Index, guestOffset, problem);
        }
        long l2Offset = L1Entry.offset(l1Entry);
        if (l2Offset == 0) {
            // Only the copied bit was set: still no table.
            return out.set(ClusterRun.Kind.UNALLOCATED, guestOffset, Math.min(reach, maxLength), -1, 0);
        }
        MetadataCache.Table table = cache.get(l2Offset, l2Loader);
        long limit = Math.min(maxLength, reach);
        int l2Index = (int) ((guestOffset >>> clusterBits) & ((1L << l2Bits) - 1));
        return extendedL2 ? scanExtended(table, l2Index, guestOffset, limit, out)
                : scanStandard(table, l2Index, guestOffset, limit, out);
    }

    /** Standard (64-bit) entries: runs of whole clusters. */
    private ClusterRun scanStandard(MetadataCache.Table table, int l2Index, long guestOffset, long limit,
                                    ClusterRun out) throws BlockException {
        long e0 = table.getLong(l2Index * 8);
        check(e0, 0, table, l2Index, guestOffset);
        long inCluster = guestOffset & (clusterSize - 1);
        ClusterType type = L2Entry.type(e0, false);
        if (type == ClusterType.COMPRESSED) {
            return compressedRun(e0, guestOffset, inCluster, limit, out);
        }
        ClusterRun.Kind kind = switch (type) {
            case NORMAL -> ClusterRun.Kind.DATA;
            case ZERO_PLAIN -> ClusterRun.Kind.ZERO_PLAIN;
            case ZERO_ALLOC -> ClusterRun.Kind.ZERO_ALLOC;
            case UNALLOCATED -> ClusterRun.Kind.UNALLOCATED;
            case COMPRESSED -> throw new AssertionError();
        };
        boolean hasHost = kind == ClusterRun.Kind.DATA || kind == ClusterRun.Kind.ZERO_ALLOC;
        long host = hasHost ? L2Entry.offset(e0) + inCluster : -1;
        long length = clusterSize - inCluster;
        int from = l2Index + 1;
        long wanted = (Math.max(0, limit - length) + clusterSize - 1) >>> clusterBits;   // entries to reach limit
        int to = (int) Math.min(1 << l2Bits, from + wanted);
        if (from < to) {
            // A following entry continues the run iff, copied bit aside, it equals what the run expects
            // next: 0 (unallocated), ZERO (zero, no host), or the next host cluster (| ZERO for ZERO_ALLOC).
            // Such an entry is valid (no reserved bits, aligned, zero flag only where e0 had it and so
            // the version allows it) and of e0's type, as L2Entry.problem/type would say, entry by entry.
            long zeroBit = e0 & L2Entry.ZERO;
            long want = hasHost ? (L2Entry.offset(e0) + clusterSize) | zeroBit : zeroBit;
            long step = hasHost ? clusterSize : 0;
            if (hasHost) {
                // Host offsets must stay below 2^56 (bits 9-55): stop where the next one would not.
                long room = (((1L << 56) - L2Entry.offset(e0)) >> clusterBits) - 1;
                to = (int) Math.min(to, from + Math.max(0, room));
            }
            int stop = table.scanRun(from, to, want, step);
            length += (long) (stop - from) << clusterBits;
        }
        return out.set(kind, guestOffset, Math.min(length, limit), host, 0);
    }

    /** Extended (128-bit) entries: runs of subclusters, possibly across clusters. */
    private ClusterRun scanExtended(MetadataCache.Table table, int l2Index, long guestOffset, long limit,
                                    ClusterRun out) throws BlockException {
        int subBits = clusterBits - 5;
        int subSize = 1 << subBits;
        long e0 = table.getLong(l2Index * 16);
        long b0 = table.getLong(l2Index * 16 + 8);
        check(e0, b0, table, l2Index, guestOffset);
        long inCluster = guestOffset & (clusterSize - 1);
        int sc = (int) (inCluster >>> subBits);
        SubclusterType type = L2Entry.subclusterType(e0, b0, sc);
        if (type == SubclusterType.COMPRESSED) {
            return compressedRun(e0, guestOffset, inCluster, limit, out);
        }
        ClusterRun.Kind kind = kindOf(type);
        boolean hasHost = kind == ClusterRun.Kind.DATA || kind == ClusterRun.Kind.ZERO_ALLOC
                || kind == ClusterRun.Kind.UNALLOCATED_ALLOC;
        long host = hasHost ? L2Entry.offset(e0) + inCluster : -1;
        long length = ((long) (sc + 1) << subBits) - inCluster;
        int entries = 1 << l2Bits;
        int i = l2Index;
        int j = sc + 1;
        long e = e0;
        long b = b0;
        while (length < limit) {
            if (j == L2Entry.SUBCLUSTERS) {
                i++;
                j = 0;
                if (i >= entries) {
                    break;
                }
                e = table.getLong(i * 16);
                b = table.getLong(i * 16 + 8);
                if (L2Entry.problem(e, b, clusterBits, true, version) != null) {
                    break;
                }
            }
            if (L2Entry.subclusterType(e, b, j) != type) {
                break;
            }
            if (hasHost && L2Entry.offset(e) + ((long) j << subBits) != host + length) {
                break;
            }
            length += subSize;
            j++;
        }
        return out.set(kind, guestOffset, Math.min(length, limit), host, 0);
    }

    private static ClusterRun.Kind kindOf(SubclusterType type) {
        return switch (type) {
            case NORMAL -> ClusterRun.Kind.DATA;
            case ZERO_PLAIN -> ClusterRun.Kind.ZERO_PLAIN;
            case ZERO_ALLOC -> ClusterRun.Kind.ZERO_ALLOC;
            case UNALLOCATED_PLAIN -> ClusterRun.Kind.UNALLOCATED;
            case UNALLOCATED_ALLOC -> ClusterRun.Kind.UNALLOCATED_ALLOC;
            case COMPRESSED, INVALID -> throw new AssertionError(type);
        };
    }

    /** A compressed cluster is always one run of its own (decompressed whole). */
    private ClusterRun compressedRun(long entry, long guestOffset, long inCluster, long limit, ClusterRun out) {
        long coffset = L2Entry.compressedOffset(entry, clusterBits);
        int csize = L2Entry.compressedSectorsBytes(entry, clusterBits);
        return out.set(ClusterRun.Kind.COMPRESSED, guestOffset, Math.min(clusterSize - inCluster, limit),
                coffset, csize);
    }

    /** Fails the lookup when the entry it starts at is malformed (qcow2-format.md §11: bad range gets EIO). */
    private void check(long entry, long bitmap, MetadataCache.Table table, int l2Index, long guestOffset)
            throws BlockException {
        String problem = L2Entry.problem(entry, bitmap, clusterBits, extendedL2, version);
        if (problem != null) {
            long entryOffset = table.hostOffset() + (long) l2Index * entryBytes;
            throw BlockException.corrupt(resource, entryOffset,
                    "L2 entry %d of table 0x%x (guest offset 0x%x, entry at file offset 0x%x): %s",
                    l2Index, table.hostOffset(), guestOffset, entryOffset, problem);
        }
    }

    /** Reads one L2 table (one cluster; bytes past the end of the file read as zeros). */
    ByteBuffer loadL2(long hostOffset) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(clusterSize);
        try {
            file.read(hostOffset, b);
        } catch (IOException e) {
            throw BlockException.io(resource, hostOffset, "L2 table read", e);
        }
        b.flip();
        return b;
    }

    int clusterSize() {
        return clusterSize;
    }
}
