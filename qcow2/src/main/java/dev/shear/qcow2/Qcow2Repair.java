package dev.shear.qcow2;

import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.function.Consumer;

/**
 * {@code qemu-img check -r leaks|all} for qcow2 (qcow2-format.md §11, §12; QEMU qcow2-refcount.c
 * {@code qcow2_check_refcounts}, {@code compare_refcounts}, {@code check_oflag_copied};
 * qcow2.c {@code qcow2_co_check_locked}).
 *
 * <h2>What is repaired</h2>
 * <ul>
 *   <li>{@link Mode#LEAKS}: stored refcounts above the computed reference count are lowered to it
 *       ("Repairing cluster N refcount=X reference=Y").</li>
 *   <li>{@link Mode#ALL}: also stored refcounts below the reference count (but not 0) are raised, and
 *       then, against the repaired refcounts, wrong copied flags of the active L1 and L2 entries are
 *       fixed ("Repairing OFLAG_COPIED ..."). When nothing is left (no corruption, no check error),
 *       the dirty and corrupt bits are cleared, as QEMU does after any {@code -r}.</li>
 * </ul>
 *
 * <h2>What is refused (nothing is changed, and the reason is given)</h2>
 * Anything else the check finds — malformed or misaligned table entries, references past the end of
 * the file, broken refcount blocks or table, a referenced cluster whose stored refcount is 0 (QEMU then
 * rebuilds the whole refcount structure), unreadable metadata — means the reference walk itself cannot be
 * trusted: lowering a refcount could free a live cluster, and QEMU's repairs there (zeroing entries,
 * rebuilding refcounts) are guesses. Shear then repairs nothing at all and reports the plain check.
 *
 * <h2>Order</h2>
 * Refcount fixes are written and fsynced before the copied flags are recomputed from them; copied
 * flags are written and fsynced before the header bits are cleared.
 */
public final class Qcow2Repair {
    /** What {@code -r} allows. */
    public enum Mode {
        /** A plain check. */
        NONE,
        /** {@code -r leaks}. */
        LEAKS,
        /** {@code -r all}. */
        ALL
    }

    /**
     * The outcome of the repairing pass.
     *
     * @param result  the repairing pass's counters: what was found and not fixed, and what was fixed
     * @param refused why nothing was repaired, or null
     */
    public record Outcome(CheckResult result, String refused) {
    }

    private Qcow2Repair() {
    }

    /**
     * Checks {@code file} (open writable) and repairs what {@code mode} allows, streaming messages in
     * qemu-img's words to {@code messages}. The caller runs a plain {@link Qcow2Check#check} afterwards
     * ("Double checking the fixed image now...").
     */
    public static Outcome repair(ImageFile file, String resource, Mode mode, Consumer<String> messages)
            throws IOException {
        String[] refused = new String[1];
        CheckResult r = Qcow2Check.checkAndRepair(file, resource, mode, messages, refused);
        if (mode != Mode.NONE && refused[0] == null && r.completed() && r.corruptions() == 0
                && r.checkErrors() == 0) {
            clearDirtyAndCorrupt(file, resource);
        }
        return new Outcome(r, refused[0]);
    }

    /** Writes the refcount fixes {cluster, value} into their refcount blocks, then fsyncs. */
    static void applyRefcountFixes(CheckContext ctx, OnDiskRefcounts onDisk, Iterable<long[]> fixes)
            throws IOException {
        int order = ctx.layout.refcountOrder();
        int blockBits = Refcounts.refcountBlockBits(ctx.clusterBits, order);
        for (long[] f : fixes) {
            long cluster = f[0];
            long block = onDisk.tableEntry((int) (cluster >>> blockBits)) & OnDiskRefcounts.REFT_OFFSET_MASK;
            ByteBuffer b = ctx.read(block, ByteBuffer.allocate((int) ctx.clusterSize));
            Refcounts.set(b, order, (int) (cluster & ((1L << blockBits) - 1)), f[1]);
            write(ctx.file, ctx.resource, block, b.clear());
        }
        sync(ctx.file, ctx.resource);
    }

    /** Writes the 8-byte table entry fixes {file offset, value}, then fsyncs. */
    static void applyEntryFixes(CheckContext ctx, Iterable<long[]> fixes) throws IOException {
        for (long[] f : fixes) {
            write(ctx.file, ctx.resource, f[0], ByteBuffer.allocate(8).putLong(0, f[1]));
        }
        sync(ctx.file, ctx.resource);
    }

    private static void clearDirtyAndCorrupt(ImageFile file, String resource) throws IOException {
        Qcow2Header h = Qcow2Header.read(file, resource);
        long bits = FeatureBits.INCOMPAT_DIRTY | FeatureBits.INCOMPAT_CORRUPT;
        if (h.version() >= 3 && (h.incompatibleFeatures() & bits) != 0) {
            // incompatible_features at header offset 72: one aligned 8-byte write (QEMU qcow2_mark_clean /
            // qcow2_mark_consistent rewrite the header; the other fields are unchanged)
            write(file, resource, 72, ByteBuffer.allocate(8).putLong(0, h.incompatibleFeatures() & ~bits));
            sync(file, resource);
        }
    }

    private static void write(ImageFile file, String resource, long offset, ByteBuffer data) throws IOException {
        MetadataIo.write(file, resource, offset, data, "repair write");
    }

    private static void sync(ImageFile file, String resource) throws IOException {
        MetadataIo.sync(file, resource);
    }
}
