package dev.shear.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The guest-mapping part of {@link Qcow2Check}: counts the references of an L1 table, its L2 tables
 * and every cluster they map, checking each entry on the way; and afterwards checks the copied flag of
 * the active tables against the stored refcounts (qcow2-format.md §6, §12; QEMU
 * {@code check_refcounts_l1}, {@code check_refcounts_l2}, {@code check_oflag_copied}).
 *
 * <pre>
 * L1 entry:  63 copied | 56-62 reserved | 9-55 L2 table offset | 0-8 reserved
 * L2 entry:  63 copied | 62 compressed | standard: 56-61 reserved, 9-55 host offset, 1-8 reserved,
 *            0 zero flag | compressed: bits [x, 62) additional sectors, [0, x) host byte offset,
 *            x = 62 - (cluster_bits - 8)
 * extended L2 entries add a 64-bit bitmap: bits 0-31 subcluster allocated, 32-63 reads as zero
 * </pre>
 *
 * <p>Design notes: an L1 table is read in chunks of {@value #L1_CHUNK_ENTRIES} entries and one L2 table
 * at a time, so memory does not depend on {@code l1_size}. Unlike QEMU, an unreadable table is counted
 * as a check error and the walk goes on with the next one (QEMU stops the whole check there; the exit
 * status is 1 either way).
 */
final class MappingCheck {
    /** L1 entries read at a time: 32 KiB. */
    static final int L1_CHUNK_ENTRIES = 4096;

    private final CheckContext ctx;
    private final CheckLayout layout;
    private final ByteBuffer l2Table;

    MappingCheck(CheckContext ctx) {
        this.ctx = ctx;
        this.layout = ctx.layout;
        this.l2Table = ByteBuffer.allocate((int) ctx.clusterSize);
    }

    /**
     * Classifies a (first 64 bits of an) L2 entry as QEMU's {@code qcow2_get_cluster_type} does:
     * {@link L2Entry#type}, plus the external-data-file case that helper does not know.
     */
    ClusterType type(long entry) {
        ClusterType type = L2Entry.type(entry, layout.extendedL2());
        // Offset 0 is a valid data-file offset; the copied flag tells it from "unallocated".
        if (type == ClusterType.UNALLOCATED && layout.externalData() && L2Entry.isCopied(entry)) {
            return ClusterType.NORMAL;
        }
        return type;
    }

    /** Receives L1 entries; {@code index} counts from 0 over the whole table. */
    private interface L1Visitor {
        void visit(int index, long entry) throws IOException;
    }

    /**
     * Reads {@code l1Size} entries at {@code l1Offset} chunk by chunk.
     *
     * @return false if a chunk could not be read (reported as a check error)
     */
    private boolean forEachL1Entry(long l1Offset, long l1Size, String who, L1Visitor visitor) throws IOException {
        ByteBuffer chunk = ByteBuffer.allocate(8 * (int) Math.min(l1Size, L1_CHUNK_ENTRIES));
        for (long base = 0; base < l1Size; base += L1_CHUNK_ENTRIES) {
            int n = (int) Math.min(L1_CHUNK_ENTRIES, l1Size - base);
            chunk.clear().limit(n * 8);
            try {
                ctx.read(l1Offset + base * 8, chunk);
            } catch (IOException e) {
                ctx.report.say("ERROR: I/O error in %s", who);
                ctx.report.checkErrors++;
                return false;
            }
            for (int i = 0; i < n; i++) {
                visitor.visit((int) (base + i), chunk.getLong(i * 8));
            }
        }
        return true;
    }

    /**
     * Counts an L1 table, its L2 tables and what they map.
     *
     * <p>On entry: {@code l1Size <= } {@link Qcow2Check#MAX_L1_ENTRIES} (checked by the caller).
     *
     * @param active true for the active L1: entries then feed the allocation statistics
     */
    void countL1(long l1Offset, long l1Size, boolean active) throws IOException {
        if (l1Size == 0) {
            return;
        }
        // The L1 table's own clusters first, then per entry its L2 table and what that maps.
        ctx.reference(l1Offset, l1Size * 8);
        forEachL1Entry(l1Offset, l1Size, "check_refcounts_l1", (index, entry) -> {
            if (entry == 0) {
                return;
            }
            if (L1Entry.reservedBits(entry) != 0) {
                ctx.report.corruption("ERROR found L1 entry with reserved bits set: %x", entry);
            }
            // An entry that is not 0 but has offset 0 (only flags) counts cluster 0 again, as in QEMU.
            long l2Offset = L1Entry.offset(entry);
            ctx.reference(l2Offset, ctx.clusterSize);
            if ((l2Offset & (ctx.clusterSize - 1)) != 0) {
                ctx.report.corruption("ERROR l2_offset=%x: Table is not cluster aligned; L1 entry corrupted",
                        l2Offset);
            }
            countL2(l2Offset, active);
        });
    }

    /** Reads one L2 table into {@link #l2Table}; false (and a check error) if it cannot be read. */
    private boolean readL2(long l2Offset, String error) {
        l2Table.clear();
        try {
            ctx.read(l2Offset, l2Table);
            return true;
        } catch (IOException e) {
            ctx.report.say(error, e.getMessage());
            ctx.report.checkErrors++;
            return false;
        }
    }

    private void countL2(long l2Offset, boolean active) {
        if (!readL2(l2Offset, "ERROR: I/O error in check_refcounts_l2")) {
            return;
        }
        CheckReport report = ctx.report;
        int entryBytes = layout.l2EntryBytes();
        // Fragmentation is measured inside one L2 table, as QEMU does.
        long nextContiguousOffset = 0;
        for (int i = 0; i < layout.l2Entries(); i++) {
            long entry = l2Table.getLong(i * entryBytes);
            // Without extended L2 there is no bitmap: 0 makes every subcluster test below pass.
            long bitmap = layout.extendedL2() ? l2Table.getLong(i * entryBytes + 8) : 0;
            ClusterType type = type(entry);
            // Reserved bits are checked before the type's own checks, so both may be reported.
            if (L2Entry.reservedBits(entry) != 0) {
                report.corruption("ERROR found l2 entry with reserved bits set: %x", entry);
            }
            switch (type) {
                case COMPRESSED -> {
                    if (L2Entry.isCopied(entry)) {
                        report.corruption("ERROR: coffset=0x%x: copied flag must never be set for compressed "
                                + "clusters", L2Entry.compressedOffset(entry, ctx.clusterBits));
                        entry &= ~L2Entry.COPIED;
                    }
                    if (layout.externalData()) {
                        report.corruption("ERROR compressed cluster %d with data file, entry=0x%x", i, entry);
                        continue;
                    }
                    if (bitmap != 0) {
                        report.corruption("ERROR compressed cluster %d with non-zero subcluster allocation "
                                + "bitmap, entry=0x%x", i, entry);
                        continue;
                    }
                    // Every host cluster of the sector range [coffset & ~511, + sectors * 512) gets one
                    // reference: neighbours packed into the same sectors share it (qcow2-format.md §6.4).
                    // Counted from coffset itself (not the sector start): same clusters, and the bounds
                    // message shows QEMU's offset and size.
                    ctx.reference(L2Entry.compressedOffset(entry, ctx.clusterBits),
                            L2Entry.compressedSectorsBytes(entry, ctx.clusterBits));
                    if (active) {
                        // Compressed clusters are fragmented by nature (sector-granular re-reads).
                        report.allocatedClusters++;
                        report.compressedClusters++;
                        report.fragmentedClusters++;
                    }
                }
                case ZERO_ALLOC, NORMAL -> {
                    long offset = L2Entry.offset(entry);
                    if (L2Entry.hasAllocZeroOverlap(bitmap)) {
                        report.corruption("ERROR offset=%x: Allocated cluster has corrupted subcluster "
                                + "allocation bitmap", offset);
                    }
                    if ((offset & (ctx.clusterSize - 1)) != 0) {
                        // QEMU words it by whether the entry holds data or only preallocated space;
                        // either way the misaligned range is still counted below (two clusters).
                        boolean containsData = layout.extendedL2()
                                ? L2Entry.allocMask(bitmap) != 0
                                : !L2Entry.isZeroFlag(entry);
                        if (containsData) {
                            report.corruption("ERROR offset=%x: Data cluster is not properly aligned; L2 entry "
                                    + "corrupted.", offset);
                        } else {
                            report.corruption("ERROR offset=%x: Preallocated cluster is not properly aligned; "
                                    + "L2 entry corrupted.", offset);
                        }
                    }
                    if (active) {
                        report.allocatedClusters++;
                        if (nextContiguousOffset != 0 && offset != nextContiguousOffset) {
                            report.fragmentedClusters++;
                        }
                        nextContiguousOffset = offset + ctx.clusterSize;
                    }
                    // Data in an external data file is not refcounted in this file.
                    if (!layout.externalData()) {
                        ctx.reference(offset, ctx.clusterSize);
                    }
                }
                case ZERO_PLAIN -> {
                    // Nothing to count: reads as zeros without host storage.
                }
                case UNALLOCATED -> {
                    if (L2Entry.allocMask(bitmap) != 0) {
                        report.corruption("ERROR: Unallocated cluster has non-zero subcluster allocation map");
                    }
                }
                default -> throw new IllegalStateException("type: " + type);
            }
        }
    }

    /**
     * Checks bit 63 of every active L1 entry and of every NORMAL/ZERO_ALLOC entry of the active L2
     * tables: it must be set exactly when the stored refcount is 1 (qcow2-format.md §10). Lookups that
     * fail were already reported by the comparison and are skipped silently, as in QEMU (a failed L2
     * table lookup skips its whole table).
     */
    void checkCopiedFlags(OnDiskRefcounts onDisk) throws IOException {
        CheckReport report = ctx.report;
        forEachL1Entry(layout.l1TableOffset(), layout.l1Size(), "check_oflag_copied", (index, l1Entry) -> {
            long l2Offset = L1Entry.offset(l1Entry);
            if (l2Offset == 0) {
                return;
            }
            long refcount;
            try {
                refcount = onDisk.get(l2Offset >>> ctx.clusterBits);
            } catch (OnDiskRefcounts.LookupFailed e) {
                return;
            }
            if ((refcount == 1) != L1Entry.isCopied(l1Entry)) {
                boolean fix = report.fix == Qcow2Repair.Mode.ALL;
                report.say("%s OFLAG_COPIED L2 cluster: l1_index=%d l1_entry=%x refcount=%s",
                        fix ? "Repairing" : "ERROR", index, l1Entry, Long.toUnsignedString(refcount));
                if (fix) {
                    report.entryFixes.add(new long[] {layout.l1TableOffset() + index * 8L, l1Entry ^ L1Entry.COPIED});
                    report.corruptionsFixed++;
                } else {
                    report.corruptions++;
                }
            }
            if (!readL2(l2Offset, "ERROR: Could not read L2 table: %s")) {
                return;
            }
            int entryBytes = layout.l2EntryBytes();
            for (int j = 0; j < layout.l2Entries(); j++) {
                long entry = l2Table.getLong(j * entryBytes);
                ClusterType type = type(entry);
                if (type != ClusterType.NORMAL && type != ClusterType.ZERO_ALLOC) {
                    continue;
                }
                long dataRefcount;
                if (layout.externalData()) {
                    dataRefcount = 1;
                } else {
                    try {
                        dataRefcount = onDisk.get(L2Entry.offset(entry) >>> ctx.clusterBits);
                    } catch (OnDiskRefcounts.LookupFailed e) {
                        continue;
                    }
                }
                if ((dataRefcount == 1) != L2Entry.isCopied(entry)) {
                    boolean fix = report.fix == Qcow2Repair.Mode.ALL && !layout.externalData();
                    report.say("%s OFLAG_COPIED data cluster: l2_entry=%x refcount=%s", fix ? "Repairing" : "ERROR",
                            entry, Long.toUnsignedString(dataRefcount));
                    if (fix) {
                        report.entryFixes.add(new long[] {l2Offset + (long) j * entryBytes, entry ^ L2Entry.COPIED});
                        report.corruptionsFixed++;
                    } else {
                        report.corruptions++;
                    }
                }
            }
        });
    }
}
