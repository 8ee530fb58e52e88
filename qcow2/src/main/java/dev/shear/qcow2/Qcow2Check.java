package dev.shear.qcow2;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import dev.shear.qcow2.bitmap.BitmapTable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.function.Consumer;

/**
 * Read-only consistency check of a qcow2 image, in the manner of {@code qemu-img check}
 * (qcow2-format.md §12; QEMU {@code qcow2_check_refcounts} in block/qcow2-refcount.c).
 *
 * <h2>Algorithm</h2>
 * <ol>
 *   <li>Compute a reference count for every host cluster of the file ({@link InMemoryRefcounts}) by
 *       walking every reference, in QEMU's order: the header cluster; the active L1 table, its L2
 *       tables and every cluster they map (normal, zero with preallocation, every host cluster a
 *       compressed sector range touches); each snapshot's L1 table and what it reaches; the snapshot
 *       table; the refcount table; the encryption header; the bitmap directory, tables and data (only
 *       when autoclear bit 0 says the bitmaps are consistent); each refcount block.</li>
 *   <li>Compare with the stored refcount of every cluster: stored &gt; computed is a leak, stored &lt;
 *       computed a corruption.</li>
 *   <li>Check the copied flag (bit 63) of the active L1 and L2 entries against the stored refcounts.</li>
 * </ol>
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li>Never writes: the file may be opened read-only. Repair ({@code -r}) belongs to the write
 *       engine.</li>
 *   <li>Bounded: the computed array is sized from the file length (2 bytes per cluster, pages
 *       allocated on first reference), never from a value read from the image; a reference that ends
 *       one cluster or more past the end of the file is a corruption, not an allocation. Tables are
 *       read one cluster (or chunk) at a time; the kept messages are capped at
 *       {@link #MAX_KEPT_MESSAGES} (a sink sees all of them).</li>
 *   <li>Findings use qemu-img's words and counts, so that a differential test can compare them line
 *       for line. Where QEMU stops the whole check ("Check failed: ..."), so does this one
 *       ({@link CheckResult#failure()}); an unreadable L1 or L2 table is the exception: it is counted
 *       as a check error and the walk goes on.</li>
 * </ul>
 */
public final class Qcow2Check {
    /** Messages kept in a {@link CheckResult}; further ones reach only the sink. */
    public static final int MAX_KEPT_MESSAGES = 10_000;
    /** QEMU QCOW_MAX_REFTABLE_SIZE: 8 MiB of refcount table. */
    static final long MAX_REFTABLE_BYTES = 8L << 20;
    /** QEMU QCOW_MAX_L1_SIZE / 8: a snapshot L1 larger than 32 MiB is a corrupted entry. */
    static final long MAX_L1_ENTRIES = (32L << 20) / 8;
    /** QEMU refuses to check files of more clusters than an int holds (EFBIG). */
    static final long MAX_FILE_CLUSTERS = Integer.MAX_VALUE;

    private Qcow2Check() {
    }

    /** Stops the check where QEMU's returns a negative errno; the message is the errno text. */
    static final class CheckFailed extends Exception {
        private static final long serialVersionUID = 1L;

        CheckFailed(String message) {
            super(message, null, false, false);
        }
    }

    /** Checks the qcow2 image in {@code file}; see {@link #check(ImageFile, String, Consumer)}. */
    public static CheckResult check(ImageFile file, String resource) throws IOException {
        return check(file, resource, null);
    }

    /**
     * Checks the qcow2 image in {@code file} without writing to it.
     *
     * @param resource the image name used in messages
     * @param messages receives each finding as it is made (qemu-img prints them on stderr), or null
     * @return the counters, statistics and messages; {@link CheckResult#exitCode()} is qemu-img's
     * @throws IOException if the header cannot be read or decoded (qemu-img: "Could not open")
     */
    public static CheckResult check(ImageFile file, String resource, Consumer<String> messages)
            throws IOException {
        Qcow2Header header = Qcow2Header.read(file, resource);
        CheckReport report = new CheckReport(messages);
        String failure = null;
        try {
            run(file, resource, CheckLayouts.read(file, header, resource, report), report, null);
        } catch (CheckFailed e) {
            failure = e.getMessage();
        }
        return report.result(failure);
    }

    /**
     * The check with repair ({@link Qcow2Repair}): as {@link #check(ImageFile, String, Consumer)}, fixing
     * what {@code mode} allows when it is safe; otherwise {@code refused[0]} says why nothing was fixed.
     */
    static CheckResult checkAndRepair(ImageFile file, String resource, Qcow2Repair.Mode mode,
                                      Consumer<String> messages, String[] refused) throws IOException {
        Qcow2Header header = Qcow2Header.read(file, resource);
        CheckReport report = new CheckReport(messages);
        report.fix = mode;
        String failure = null;
        try {
            run(file, resource, CheckLayouts.read(file, header, resource, report), report, refused);
        } catch (CheckFailed e) {
            failure = e.getMessage();
        }
        return report.result(failure);
    }

    /**
     * Checks the image whose layout is already decoded.
     *
     * @param messages receives each message as it is found, or null
     */
    static CheckResult check(ImageFile file, String resource, CheckLayout layout, Consumer<String> messages)
            throws IOException {
        CheckReport report = new CheckReport(messages);
        String failure = null;
        try {
            run(file, resource, layout, report, null);
        } catch (CheckFailed e) {
            failure = e.getMessage();
        }
        return report.result(failure);
    }

    private static void run(ImageFile file, String resource, CheckLayout layout, CheckReport report,
                            String[] refused) throws IOException, CheckFailed {
        // qcow2_check_read_snapshot_table: v3 entries need the 64-bit VM state and disk size fields.
        if (layout.version() >= 3) {
            for (int i = 0; i < layout.snapshots().size(); i++) {
                if (layout.snapshots().get(i).extraDataSize() < 16) {
                    report.corruption("ERROR snapshot table entry %d is incomplete", i);
                }
            }
        }
        long fileSize = file.size();
        long clusterSize = layout.clusterSize();
        long nbClusters = (fileSize + clusterSize - 1) >>> layout.clusterBits();
        if (nbClusters > MAX_FILE_CLUSTERS) {
            report.checkErrors++;
            throw new CheckFailed("File too large");
        }
        long sizeRoundedToSectors = layout.virtualSize() & ~511L;
        report.totalClusters = (sizeRoundedToSectors + clusterSize - 1) >>> layout.clusterBits();

        InMemoryRefcounts computed = new InMemoryRefcounts(nbClusters, layout.refcountBits());
        CheckContext ctx = new CheckContext(file, resource, layout, fileSize, report, computed);
        MappingCheck mapping = new MappingCheck(ctx);
        OnDiskRefcounts onDisk = OnDiskRefcounts.load(ctx);

        calculateRefcounts(ctx, mapping, onDisk);
        if (report.fix != Qcow2Repair.Mode.NONE) {
            String unsafe = unsafeToRepair(ctx, onDisk);
            if (unsafe != null) {
                refused[0] = unsafe;
                report.fix = Qcow2Repair.Mode.NONE;
            }
        }
        // QEMU qcow2_check_refcounts: a plain comparison first ("Leaked ..." / "ERROR ..."); then, if it
        // found anything and a repair was asked for, the counters are reset and the comparison runs again
        // with repair ("Repairing ..."), so qemu-img prints both.
        Qcow2Repair.Mode fix = report.fix;
        long corruptionsBefore = report.corruptions;
        long leaksBefore = report.leaks;
        long checkErrorsBefore = report.checkErrors;
        report.fix = Qcow2Repair.Mode.NONE;
        long highest = RefcountCheck.compare(ctx, onDisk);
        report.fix = fix;
        if (fix != Qcow2Repair.Mode.NONE && (report.leaks != 0 || report.corruptions != 0)) {
            report.corruptions = corruptionsBefore;
            report.leaks = leaksBefore;
            report.checkErrors = checkErrorsBefore;
            highest = RefcountCheck.compare(ctx, onDisk);
        }
        if (!report.refcountFixes.isEmpty()) {
            Qcow2Repair.applyRefcountFixes(ctx, onDisk, report.refcountFixes);
            onDisk = OnDiskRefcounts.load(ctx);   // the copied flags are judged against the fixed refcounts
        }
        mapping.checkCopiedFlags(onDisk);
        if (!report.entryFixes.isEmpty()) {
            Qcow2Repair.applyEntryFixes(ctx, report.entryFixes);
        }
        report.imageEndOffset = (highest + 1) * clusterSize;
    }

    /**
     * Why a repair would not be safe (see {@link Qcow2Repair}), or null: any finding of the walk so far
     * (a corruption or check error means the computed references may be incomplete), or a referenced
     * cluster with a stored refcount of 0 (QEMU rebuilds the refcount structure for that).
     */
    private static String unsafeToRepair(CheckContext ctx, OnDiskRefcounts onDisk) {
        CheckReport report = ctx.report;
        if (report.corruptions != 0 || report.checkErrors != 0) {
            return report.corruptions + " corruptions and " + report.checkErrors + " check errors in the tables "
                    + "(expected: none; the references cannot be trusted)";
        }
        for (long i = 0; i < ctx.computed.size(); i++) {
            try {
                if (onDisk.get(i) == 0 && ctx.computed.get(i) != 0) {
                    return "cluster " + i + " is referenced but has refcount 0 (the refcount structure would have "
                            + "to be rebuilt)";
                }
            } catch (OnDiskRefcounts.LookupFailed e) {
                return "refcount of cluster " + i + ": " + e.getMessage();
            }
        }
        return null;
    }

    /** Builds the computed refcounts (QEMU calculate_refcounts), checking each structure on the way. */
    private static void calculateRefcounts(CheckContext ctx, MappingCheck mapping, OnDiskRefcounts onDisk)
            throws IOException, CheckFailed {
        CheckLayout layout = ctx.layout;
        CheckReport report = ctx.report;
        ctx.reference(0, ctx.clusterSize);
        mapping.countL1(layout.l1TableOffset(), layout.l1Size(), true);

        if (layout.externalData() && !layout.snapshots().isEmpty()) {
            report.corruption("ERROR %d snapshots in image with data file", layout.snapshots().size());
        }
        for (CheckLayout.SnapshotRef sn : layout.snapshots()) {
            if ((sn.l1TableOffset() & (ctx.clusterSize - 1)) != 0) {
                report.corruption("ERROR snapshot %s (%s) l1_offset=%s: L1 table is not cluster aligned; "
                        + "snapshot table entry corrupted", sn.id(), sn.name(), alternateHex(sn.l1TableOffset()));
                continue;
            }
            if (sn.l1Size() > MAX_L1_ENTRIES) {
                report.corruption("ERROR snapshot %s (%s) l1_size=%s: L1 table is too large; snapshot table "
                        + "entry corrupted", sn.id(), sn.name(), alternateHex(sn.l1Size()));
                continue;
            }
            mapping.countL1(sn.l1TableOffset(), sn.l1Size(), false);
        }
        ctx.reference(layout.snapshotsOffset(), layout.snapshotsSize());
        ctx.reference(layout.refcountTableOffset(), layout.refcountTableEntries() * 8);
        if (layout.cryptoHeaderLength() != 0) {
            ctx.reference(layout.cryptoHeaderOffset(), layout.cryptoHeaderLength());
        }
        countBitmaps(ctx);
        RefcountCheck.checkRefblocks(ctx, onDisk);
    }

    /**
     * The references of every host cluster as the check computes them (header, active and snapshot
     * L1/L2 tables and data, snapshot table, encryption header, bitmaps when consistent), without the
     * refcount structure itself: the input of {@link RefcountRebuild}.
     *
     * @throws BlockException CORRUPT_IMAGE when the walk found corruptions (a rebuild from broken tables
     *                        would be a guess)
     */
    static InMemoryRefcounts referencesForRebuild(ImageFile file, String resource) throws IOException {
        Qcow2Header header = Qcow2Header.read(file, resource);
        CheckReport report = new CheckReport(null);
        CheckLayout layout;
        try {
            layout = CheckLayouts.read(file, header, resource, report);
        } catch (CheckFailed e) {
            throw BlockException.corrupt(resource, -1, "refcount rebuild: %s", e.getMessage());
        }
        long fileSize = file.size();
        long nbClusters = (fileSize + layout.clusterSize() - 1) >>> layout.clusterBits();
        if (nbClusters > MAX_FILE_CLUSTERS) {
            throw BlockException.unsupported(resource, -1, "file: %d clusters (expected: <= %d to rebuild refcounts)",
                    nbClusters, MAX_FILE_CLUSTERS);
        }
        InMemoryRefcounts computed = new InMemoryRefcounts(nbClusters, layout.refcountBits());
        CheckContext ctx = new CheckContext(file, resource, layout, fileSize, report, computed);
        MappingCheck mapping = new MappingCheck(ctx);
        ctx.reference(0, ctx.clusterSize);
        mapping.countL1(layout.l1TableOffset(), layout.l1Size(), true);
        for (CheckLayout.SnapshotRef sn : layout.snapshots()) {
            mapping.countL1(sn.l1TableOffset(), sn.l1Size(), false);
        }
        ctx.reference(layout.snapshotsOffset(), layout.snapshotsSize());
        if (layout.cryptoHeaderLength() != 0) {
            ctx.reference(layout.cryptoHeaderOffset(), layout.cryptoHeaderLength());
        }
        try {
            countBitmaps(ctx);
        } catch (CheckFailed e) {
            report.corruptions++;
        }
        if (report.corruptions > 0) {
            throw BlockException.corrupt(resource, -1, "refcount rebuild: %d corruptions in the tables (expected: "
                    + "none; repair with qemu-img check -r all)", report.corruptions);
        }
        return computed;
    }

    /**
     * Counts the bitmap directory, each bitmap table and each data cluster a table names (QEMU
     * qcow2_check_bitmaps_refcounts). A directory that cannot be loaded, or a table with a malformed
     * entry, is a corruption that stops the check, as in QEMU (dirty-bitmaps.md §2).
     */
    private static void countBitmaps(CheckContext ctx) throws CheckFailed {
        CheckLayout.Bitmaps bitmaps = ctx.layout.bitmaps();
        if (bitmaps == null) {
            return;
        }
        CheckReport report = ctx.report;
        ctx.reference(bitmaps.directoryOffset(), bitmaps.directorySize());
        if (bitmaps.tables() == null) {
            report.corruptions++;
            throw new CheckFailed("Invalid argument");
        }
        for (CheckLayout.BitmapRef bm : bitmaps.tables()) {
            ctx.reference(bm.tableOffset(), bm.tableEntries() * 8);
            // QEMU loads (and validates) the whole table before counting any of its entries.
            if (!CheckLayouts.bitmapTableValid(ctx.file, bm, ctx.clusterSize)) {
                report.corruptions++;
                throw new CheckFailed("Invalid argument");
            }
            countBitmapData(ctx, bm);
        }
    }

    /** Counts the data cluster of every non-zero entry of a (validated) bitmap table, chunk by chunk. */
    private static void countBitmapData(CheckContext ctx, CheckLayout.BitmapRef bm) throws CheckFailed {
        int chunkEntries = CheckLayouts.BITMAP_CHUNK_ENTRIES;
        ByteBuffer chunk = ByteBuffer.allocate(8 * (int) Math.min(bm.tableEntries(), chunkEntries));
        for (long base = 0; base < bm.tableEntries(); base += chunkEntries) {
            int n = (int) Math.min(chunkEntries, bm.tableEntries() - base);
            chunk.clear().limit(n * 8);
            try {
                ctx.read(bm.tableOffset() + base * 8, chunk);
            } catch (IOException e) {
                ctx.report.corruptions++;
                throw new CheckFailed(e.getMessage());
            }
            for (int i = 0; i < n; i++) {
                long offset = BitmapTable.dataOffset(chunk.getLong(i * 8));
                if (offset != 0) {
                    ctx.reference(offset, ctx.clusterSize);
                }
            }
        }
    }

    /** C's {@code %#x}: "0" for zero, else "0x" and lower-case hex. */
    static String alternateHex(long value) {
        return value == 0 ? "0" : "0x" + Long.toHexString(value);
    }
}
