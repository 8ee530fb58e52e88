package dev.shear.nbd.server;

import dev.shear.block.BlockDevice;
import dev.shear.block.Extent;
import dev.shear.block.ExtentCollector;
import dev.shear.block.ZeroReportListener;
import dev.shear.nbd.protocol.NbdConstants;
import dev.shear.nbd.protocol.NbdReply;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * Builds the status chunks of one NBD_CMD_BLOCK_STATUS (nbd-protocol.md §6.8, §7).
 *
 * <p>Invariants of the answer, which real clients depend on (design.md §Interfaces):
 * <ul>
 *   <li>every context's chunk starts at the request offset and covers EXACTLY the same range: the
 *       common end is the minimum of what each context answered, and every list is clipped to it;</li>
 *   <li>nothing is reported past min(request end, export end); a request running past the export end
 *       is answered up to the end;</li>
 *   <li>every extent is non-zero; neighbours with equal status are merged; at most
 *       {@link #MAX_EXTENTS} extents per chunk (QEMU's NBD_MAX_BLOCK_STATUS_EXTENTS), exactly one
 *       with REQ_ONE;</li>
 *   <li>DONE is on the last chunk only.</li>
 * </ul>
 * Runs on the I/O pool: devices answer from metadata, but that may still read from disk.
 */
public final class BlockStatusBuilder {
    /** QEMU: 1 MiB of 8-byte descriptors per chunk. */
    public static final int MAX_EXTENTS = (1 << 20) / 8;

    private BlockStatusBuilder() {
    }

    /** Extents of one context, as parallel arrays (no boxing on the hot path). */
    static final class Runs {
        long[] lengths = new long[8];
        long[] flags = new long[8];
        int count;
        long end;

        void add(long length, long status) {
            if (count > 0 && flags[count - 1] == status) {
                lengths[count - 1] += length;
            } else {
                if (count == lengths.length) {
                    lengths = java.util.Arrays.copyOf(lengths, count * 2);
                    flags = java.util.Arrays.copyOf(flags, count * 2);
                }
                lengths[count] = length;
                flags[count] = status;
                count++;
            }
            end += length;
        }

        /** Cuts the list at {@code newEnd} (which lies inside it). */
        void clip(long start, long newEnd) {
            long pos = start;
            for (int i = 0; i < count; i++) {
                if (pos + lengths[i] >= newEnd) {
                    lengths[i] = newEnd - pos;
                    count = i + 1;
                    break;
                }
                pos += lengths[i];
            }
            end = newEnd;
        }
    }

    /**
     * @param offset request offset, inside the export
     * @param length requested length (a hint), &gt; 0
     */
    public static List<NbdReply> build(long cookie, Export export, List<MetaContext> contexts, long offset,
            long length, boolean reqOne) throws IOException {
        BlockDevice device = export.device();
        long size = device.size();
        long end = Long.compareUnsigned(length, size - offset) > 0 ? size : offset + length;
        int cap = reqOne ? 1 : MAX_EXTENTS;
        List<Runs> answers = new ArrayList<>(contexts.size());
        List<Extent> allocation = null;
        long commonEnd = end;
        for (MetaContext c : contexts) {
            Runs runs = new Runs();
            runs.end = offset;
            if (c instanceof MetaContext.DirtyBitmapContext d) {
                final long stop = end;
                export.bitmaps().dirtyRuns(d.bitmap(), offset, end - offset, (len, dirty) -> {
                    if (len <= 0) {
                        throw new IllegalStateException("dirty run length: " + len + " (expected: > 0)");
                    }
                    long take = Math.min(len, stop - runs.end);
                    runs.add(take, dirty ? NbdConstants.NBD_STATE_DIRTY : 0);
                    return runs.end < stop && runs.count < cap;
                });
            } else {
                if (allocation == null) {
                    ExtentCollector collector = new ExtentCollector(offset, end, cap);
                    device.blockStatus(offset, end - offset, collector);
                    allocation = collector.extents();
                }
                boolean depth = c instanceof MetaContext.AllocationDepth;
                for (Extent e : allocation) {
                    if (runs.count == cap && runs.flags[runs.count - 1] != status(e, depth)) {
                        break;
                    }
                    runs.add(e.length(), status(e, depth));
                }
            }
            if (runs.count == 0) {
                // A source that said nothing: report the whole range with the always-safe status 0.
                runs.add(end - offset, 0);
            }
            commonEnd = Math.min(commonEnd, runs.end);
            answers.add(runs);
        }
        List<NbdReply> chunks = new ArrayList<>(contexts.size());
        boolean base = false;
        for (int i = 0; i < contexts.size(); i++) {
            Runs runs = answers.get(i);
            runs.clip(offset, commonEnd);
            chunks.add(NbdReply.BlockStatusChunk.newInstance(cookie, offset, contexts.get(i).id(), runs.lengths,
                    runs.flags, runs.count, i == contexts.size() - 1));
            base |= contexts.get(i) instanceof MetaContext.BaseAllocation;
        }
        if (base && device instanceof ZeroReportListener listener) {
            reportZeros(allocation, commonEnd, listener);
        }
        return chunks;
    }

    /**
     * Tells {@code listener} the zero ranges of base:allocation's answer: every extent of
     * {@code allocation} up to {@code commonEnd} went out (the base runs hold all of them up to their end,
     * which is at least the common end), clipped there.
     */
    private static void reportZeros(List<Extent> allocation, long commonEnd, ZeroReportListener listener) {
        for (Extent e : allocation) {
            if (e.offset() >= commonEnd) {
                break;
            }
            if (e.isZero()) {
                listener.zeroReported(e.offset(), Math.min(e.end(), commonEnd) - e.offset());
            }
        }
    }

    /**
     * base:allocation in QEMU's mapping (nbd-protocol.md §7.1), which clients compare against: HOLE =
     * "not data", so every range that reads as zeros without data behind it (an unallocated range, and
     * also a qcow2 zero cluster, preallocated or not) is HOLE|ZERO; the engine's own HOLE bit (nothing
     * allocated in any layer) alone would report zero clusters as ZERO only. Data stays 0. The
     * allocation-depth context keeps the distinction (a zero cluster is "local"). Depth is 1-based.
     */
    static long status(Extent e, boolean depth) {
        if (depth) {
            return e.depth() == Extent.UNALLOCATED ? 0 : e.depth() + 1L;
        }
        long s = e.flags() & (NbdConstants.NBD_STATE_HOLE | NbdConstants.NBD_STATE_ZERO);
        return (s & NbdConstants.NBD_STATE_ZERO) != 0 ? s | NbdConstants.NBD_STATE_HOLE : s;
    }
}
