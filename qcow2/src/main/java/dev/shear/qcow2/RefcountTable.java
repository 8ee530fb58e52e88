package dev.shear.qcow2;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The refcount table: the first level of the refcount structure (qcow2-format.md §5.1). Immutable;
 * the allocator builds a new one when the table grows.
 *
 * <pre>
 *  63 ............................. 9 | 8 .. 0
 *  refcount block offset (0 = none)   | reserved (0)
 * </pre>
 * Lookup: {@code table_index = cluster_index >> refcount_block_bits}; an index past the table, or
 * an entry of 0, means refcount 0.
 */
final class RefcountTable {
    /** Bits 9-63: refcount block offset (QEMU REFT_OFFSET_MASK). */
    static final long OFFSET_MASK = 0xfffffffffffffe00L;
    /** Bits 0-8 (QEMU REFT_RESERVED_MASK). */
    static final long RESERVED_MASK = 0x1ffL;

    private final long[] entries;
    private final int clusterBits;
    private final int refcountBlockBits;

    private RefcountTable(long[] entries, int clusterBits, int refcountOrder) {
        this.entries = entries;
        this.clusterBits = clusterBits;
        this.refcountBlockBits = Refcounts.refcountBlockBits(clusterBits, refcountOrder);
    }

    /** A table over {@code entries} (copied), unvalidated: for writers and repair. */
    static RefcountTable of(long[] entries, int clusterBits, int refcountOrder) {
        return new RefcountTable(entries.clone(), clusterBits, refcountOrder);
    }

    /**
     * Reads the table the header points at and checks every entry: reserved bits clear (the block
     * offset is then cluster-aligned for 512-byte clusters) and offset cluster-aligned.
     *
     * <p>On entry the header was decoded, so the table is at most 8 MiB and ends below 2^63.
     */
    static RefcountTable read(ImageFile file, Qcow2Header header, String resource) throws IOException {
        long bytes = (long) header.refcountTableClusters() << header.clusterBits();
        if (bytes <= 0 || bytes > Qcow2Limits.MAX_REFTABLE_BYTES) { // re-bound: header may be hand-made
            throw BlockException.format(resource, HeaderDecoder.REFCOUNT_TABLE_CLUSTERS,
                    "refcount_table_clusters: %d (expected: 1..%d bytes of table)", header.refcountTableClusters(),
                    Qcow2Limits.MAX_REFTABLE_BYTES);
        }
        ByteBuffer buf = ByteBuffer.allocate((int) bytes);
        file.read(header.refcountTableOffset(), buf);
        buf.flip();
        return decode(buf, header.clusterBits(), header.refcountOrder(), header.refcountTableOffset(), resource);
    }

    /** Decodes a table from {@code buf} (position to limit) that sits at file offset {@code tableOffset}. */
    static RefcountTable decode(ByteBuffer buf, int clusterBits, int refcountOrder, long tableOffset,
            String resource) throws BlockException {
        ByteBuffer b = buf.slice();
        long[] entries = new long[b.remaining() / 8];
        long clusterMask = (1L << clusterBits) - 1;
        for (int i = 0; i < entries.length; i++) {
            long e = b.getLong(i * 8);
            if ((e & RESERVED_MASK) != 0) {
                throw BlockException.format(resource, tableOffset + i * 8L,
                        "refcount table entry %d: 0x%016x has reserved bits 0x%x (expected: bits 0-8 clear)", i, e,
                        e & RESERVED_MASK);
            }
            if ((e & OFFSET_MASK & clusterMask) != 0) {
                throw BlockException.format(resource, tableOffset + i * 8L,
                        "refcount table entry %d: 0x%x (expected: cluster-aligned refcount block offset)", i, e);
            }
            entries[i] = e;
        }
        return new RefcountTable(entries, clusterBits, refcountOrder);
    }

    /** Number of entries. */
    int size() {
        return entries.length;
    }

    /** Raw entry {@code i}. */
    long entry(int i) {
        return entries[i];
    }

    /** A copy of the raw entries (for writers building a grown table). */
    long[] entries() {
        return entries.clone();
    }

    /** The table as it sits on disk: 8 bytes per entry, big-endian. */
    ByteBuffer encode() {
        ByteBuffer b = ByteBuffer.allocate(entries.length * 8);
        for (long e : entries) {
            b.putLong(e);
        }
        return b.flip();
    }

    /** log2 of the refcount entries per block. */
    int refcountBlockBits() {
        return refcountBlockBits;
    }

    /** Table index covering host cluster {@code clusterIndex}. */
    long tableIndex(long clusterIndex) {
        return clusterIndex >>> refcountBlockBits;
    }

    /** Index inside its refcount block of host cluster {@code clusterIndex}. */
    int blockIndex(long clusterIndex) {
        return (int) (clusterIndex & ((1L << refcountBlockBits) - 1));
    }

    /**
     * Offset of the refcount block holding the refcount of host cluster {@code clusterIndex}, or 0
     * when no block exists (refcount 0), including past the end of the table.
     */
    long refcountBlockOffset(long clusterIndex) {
        long t = tableIndex(clusterIndex);
        return t < entries.length ? entries[(int) t] & OFFSET_MASK : 0;
    }

    /** Host clusters one full table can describe. */
    long coveredClusters() {
        return (long) entries.length << refcountBlockBits;
    }

    /** Cluster bits this table was decoded with. */
    int clusterBits() {
        return clusterBits;
    }
}
