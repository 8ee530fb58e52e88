package dev.shear.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Read-only lookup of the refcounts stored in the image, tolerant of damage: the refcount table is
 * read once, refcount blocks one at a time as the lookups walk the file (qcow2-format.md §5.1; QEMU
 * {@code qcow2_get_refcount}).
 *
 * <pre>
 * refcount table entry:  bits 0-8 reserved | bits 9-63 refcount block offset (0 = no block)
 * refcount block entry:  refcount_bits wide; 1/2/4-bit entries packed from the low bits of each
 *                        byte, 8/16/32/64-bit entries big-endian
 * </pre>
 *
 * <p>A missing block or a table index past the table means refcount 0; a block offset that is not
 * cluster aligned cannot be read (QEMU signals corruption and fails the lookup with EIO).
 */
final class OnDiskRefcounts {
    /** Bits 9-63 of a refcount table entry: {@link RefcountTable#OFFSET_MASK}. */
    static final long REFT_OFFSET_MASK = RefcountTable.OFFSET_MASK;

    /** A lookup that failed; its message is the errno text qemu-img prints after the colon. */
    static final class LookupFailed extends IOException {
        private static final long serialVersionUID = 1L;

        LookupFailed(String message) {
            super(message);
        }
    }

    private final CheckContext ctx;
    private final long[] table;
    private final int refcountOrder;
    /** log2(entries per refcount block). */
    private final int blockBits;
    private final ByteBuffer block;
    /** Offset of the block in {@link #block}, or -1. */
    private long cachedBlockOffset = -1;

    private OnDiskRefcounts(CheckContext ctx, long[] table) {
        this.ctx = ctx;
        this.table = table;
        this.refcountOrder = ctx.layout.refcountOrder();
        this.blockBits = Refcounts.refcountBlockBits(ctx.clusterBits, refcountOrder);
        this.block = ByteBuffer.allocate((int) ctx.clusterSize);
    }

    /**
     * Reads the refcount table.
     *
     * <p>On entry: {@code layout.refcountTableEntries()} is bounded by the header decoder
     * (8 MiB table, {@link Qcow2Check#MAX_REFTABLE_BYTES}); checked again here before allocating.
     */
    static OnDiskRefcounts load(CheckContext ctx) throws IOException {
        long entries = ctx.layout.refcountTableEntries();
        if (entries < 0 || entries > Qcow2Check.MAX_REFTABLE_BYTES / 8) {
            throw new IllegalArgumentException("refcount table entries: " + entries + " (expected: 0.."
                    + Qcow2Check.MAX_REFTABLE_BYTES / 8 + ")");
        }
        ByteBuffer buf = ctx.read(ctx.layout.refcountTableOffset(), ByteBuffer.allocate((int) (entries * 8)));
        long[] table = new long[(int) entries];
        buf.asLongBuffer().get(table);
        return new OnDiskRefcounts(ctx, table);
    }

    /** Entries of the refcount table. */
    int tableEntries() {
        return table.length;
    }

    /** Raw refcount table entry {@code index}. */
    long tableEntry(int index) {
        return table[index];
    }

    /**
     * The stored refcount of host cluster {@code cluster} (unsigned).
     *
     * @throws LookupFailed when the covering refcount block is misaligned or cannot be read
     */
    long get(long cluster) throws LookupFailed {
        long tableIndex = cluster >>> blockBits;
        if (tableIndex >= table.length) {
            return 0;
        }
        long blockOffset = table[(int) tableIndex] & REFT_OFFSET_MASK;
        if (blockOffset == 0) {
            return 0;
        }
        if ((blockOffset & (ctx.clusterSize - 1)) != 0) {
            ctx.report.signalCorruption("Refblock offset %s unaligned (reftable index: %s)",
                    Qcow2Check.alternateHex(blockOffset), Qcow2Check.alternateHex(tableIndex));
            throw new LookupFailed("Input/output error");
        }
        if (blockOffset != cachedBlockOffset) {
            cachedBlockOffset = -1;
            block.clear();
            try {
                ctx.file.read(blockOffset, block);
            } catch (IOException e) {
                throw new LookupFailed(e.getMessage() == null ? "Input/output error" : e.getMessage());
            }
            cachedBlockOffset = blockOffset;
        }
        return Refcounts.get(block, refcountOrder, (int) (cluster & ((1L << blockBits) - 1)));
    }
}
