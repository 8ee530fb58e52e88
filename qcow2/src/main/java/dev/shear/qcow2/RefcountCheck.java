package dev.shear.qcow2;

/**
 * The refcount-structure part of {@link Qcow2Check}: counts every refcount block and checks it, then
 * compares the stored refcount of every cluster of the file with the computed one
 * (qcow2-format.md §5, §12; QEMU {@code check_refblocks}, {@code compare_refcounts}).
 *
 * <p>Invariant checked: a refcount block is cluster aligned, lies inside the file and is referenced
 * exactly once. A stored refcount above the computed one is a leak (space wasted, data safe); below it
 * is a corruption (the cluster could be handed out again and overwritten).
 */
final class RefcountCheck {
    private RefcountCheck() {
    }

    /** Counts and checks each refcount block named by the refcount table (QEMU check_refblocks). */
    static void checkRefblocks(CheckContext ctx, OnDiskRefcounts onDisk) {
        CheckReport report = ctx.report;
        for (int i = 0; i < onDisk.tableEntries(); i++) {
            long raw = onDisk.tableEntry(i);
            long offset = raw & RefcountTable.OFFSET_MASK;
            long cluster = offset >>> ctx.clusterBits;
            if ((raw & RefcountTable.RESERVED_MASK) != 0) {
                report.corruption("ERROR refcount table entry %d has reserved bits set", i);
                continue;
            }
            if ((offset & (ctx.clusterSize - 1)) != 0) {
                report.corruption("ERROR refcount block %d is not cluster aligned; refcount table entry corrupted",
                        i);
                continue;
            }
            // Unsigned: an offset with bit 63 set is far outside any file.
            if (Long.compareUnsigned(cluster, ctx.computed.size()) >= 0) {
                report.corruption("ERROR refcount block %d is outside image", i);
                continue;
            }
            if (offset != 0) {
                ctx.reference(offset, ctx.clusterSize);
                long count = ctx.computed.get(cluster);
                if (count != 1) {
                    report.corruption("ERROR refcount block %d refcount=%s", i, Long.toUnsignedString(count));
                }
            }
        }
    }

    /**
     * Compares stored and computed refcounts of clusters {@code [0, computed.size())}.
     *
     * @return the highest cluster index with a stored or computed refcount (0 if none), for the image
     *         end offset; clusters whose stored refcount cannot be read do not count, as in QEMU
     */
    static long compare(CheckContext ctx, OnDiskRefcounts onDisk) {
        CheckReport report = ctx.report;
        InMemoryRefcounts computed = ctx.computed;
        long highest = 0;
        for (long i = 0; i < computed.size(); i++) {
            long stored;
            try {
                stored = onDisk.get(i);
            } catch (OnDiskRefcounts.LookupFailed e) {
                report.say("Can't get refcount for cluster %d: %s", i, e.getMessage());
                report.checkErrors++;
                continue;
            }
            long references = computed.get(i);
            if (stored != 0 || references != 0) {
                highest = i;
            }
            if (stored != references) {
                boolean low = Long.compareUnsigned(stored, references) < 0;
                // QEMU compare_refcounts: a stored 0 needs a rebuild (never fixed here, see Qcow2Repair)
                boolean fix = stored != 0 && (low ? report.fix == Qcow2Repair.Mode.ALL
                        : report.fix != Qcow2Repair.Mode.NONE);
                report.say("%s cluster %d refcount=%s reference=%s", fix ? "Repairing" : low ? "ERROR" : "Leaked",
                        i, Long.toUnsignedString(stored), Long.toUnsignedString(references));
                if (fix) {
                    report.refcountFixes.add(new long[] {i, references});
                    if (low) {
                        report.corruptionsFixed++;
                    } else {
                        report.leaksFixed++;
                    }
                } else if (low) {
                    report.corruptions++;
                } else {
                    report.leaks++;
                }
            }
        }
        return highest;
    }
}
