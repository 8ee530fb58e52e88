package dev.shear.bitmap.checkpoint;

import dev.shear.bitmap.BitmapManager;
import dev.shear.bitmap.BitmapManager.BitmapInfo;
import dev.shear.bitmap.DirtyBitmap;
import dev.shear.bitmap.PersistentBitmaps;
import dev.shear.block.BlockException;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * The checkpoint API of one disk image: what backup jobs, the control API and {@code shear
 * checkpoint} call (design.md §Checkpoints and incremental backup; dirty-bitmaps.md §7).
 *
 * <p>The chain lives in the sidecar ({@link CheckpointStore}); the bitmaps live in the image, changed
 * through the image's {@link BitmapManager}. Every change writes the sidecar after the bitmaps, so a
 * crash in between leaves at worst a bitmap without a checkpoint (harmless, listed by {@code shear
 * bitmap}/{@code qemu-img info}) or a checkpoint whose bitmap is gone (reported as unusable), never
 * a checkpoint that answers wrongly.
 *
 * <p>Validation against the image happens at every {@link #list()} and before any answer: a
 * checkpoint is usable iff its bitmap exists and is consistent; otherwise the reason names the
 * checkpoint and the bitmap. Thread safety: methods are synchronized; the manager orders them against
 * guest writes.
 */
public final class Checkpoints {
    private final Path image;
    private final BitmapManager bitmaps;
    private final Clock clock;
    private CheckpointChain chain;   // guarded by this

    /**
     * One checkpoint with its verdict.
     *
     * @param checkpoint the record
     * @param usable     an incremental backup may start from it
     * @param problem    why not (naming checkpoint and bitmap), or null
     */
    public record Status(Checkpoint checkpoint, boolean usable, String problem) {
    }

    private Checkpoints(Path image, BitmapManager bitmaps, CheckpointChain chain, Clock clock) {
        this.image = image;
        this.bitmaps = bitmaps;
        this.chain = chain;
        this.clock = clock;
    }

    /**
     * The checkpoints of {@code image}, whose bitmaps {@code bitmaps} manages (opened read-write).
     *
     * @throws BlockException INVALID_FORMAT for a damaged sidecar, naming the file and line
     */
    public static Checkpoints open(Path image, BitmapManager bitmaps) throws IOException {
        return open(image, bitmaps, Clock.systemUTC());
    }

    static Checkpoints open(Path image, BitmapManager bitmaps, Clock clock) throws IOException {
        return new Checkpoints(image, bitmaps, CheckpointStore.read(image), clock);
    }

    /** The chain as recorded. */
    public synchronized CheckpointChain chain() {
        return chain;
    }

    /** Every checkpoint, oldest first, validated against the image's bitmaps now. */
    public synchronized List<Status> list() {
        return status(chain, index(bitmaps.list()));
    }

    /**
     * Validates {@code chain} against an image's bitmaps (for a read-only listing too).
     *
     * @param bitmaps the image's bitmaps by name
     */
    public static List<Status> status(CheckpointChain chain, Map<String, BitmapInfo> bitmaps) {
        List<Status> out = new ArrayList<>();
        for (Checkpoint c : chain.list()) {
            String p = problem(c, bitmaps.get(c.bitmap()));
            out.add(new Status(c, p == null, p));
        }
        return out;
    }

    /** The bitmaps of a read-only image in the form {@link #status} takes. */
    public static Map<String, BitmapInfo> index(PersistentBitmaps loaded) {
        Map<String, BitmapInfo> m = new HashMap<>();
        for (PersistentBitmaps.Entry e : loaded.entries()) {
            m.put(e.name(), new BitmapInfo(e.name(), e.granularity(), e.auto(), e.inUse(), e.status(), e.problem(),
                    e.bitmap() == null ? -1 : e.bitmap().dirtyBytes()));
        }
        return m;
    }

    private static Map<String, BitmapInfo> index(List<BitmapInfo> list) {
        Map<String, BitmapInfo> m = new HashMap<>();
        for (BitmapInfo b : list) {
            m.put(b.name(), b);
        }
        return m;
    }

    private static String problem(Checkpoint c, BitmapInfo b) {
        if (b == null) {
            return "checkpoint '" + c.name() + "': bitmap '" + c.bitmap() + "' is missing from the image; the next "
                    + "backup must be full";
        }
        if (!b.usable()) {
            return "checkpoint '" + c.name() + "': bitmap '" + c.bitmap() + "' is " + (b.inUse()
                    ? "inconsistent (in_use: the image was not closed cleanly)" : "not usable (" + b.problem() + ")")
                    + "; the next backup must be full";
        }
        return null;
    }

    /**
     * Creates checkpoint {@code name}: a new enabled persistent bitmap of the same name, starting at
     * one instant (guest writes quiesced) at which {@code atSameInstant} also runs (a backup's
     * snapshot point; may be null). The parent is the newest checkpoint. The bitmap is stored at once
     * (in_use clear until the next guest change: BitmapManager#flushBitmaps), then the sidecar is written.
     *
     * @param granularity bytes per bit, 0 for the default
     */
    public synchronized Checkpoint create(String name, String description, long granularity,
            Callable<?> atSameInstant) throws IOException {
        if (chain.find(name) != null) {
            throw invalid("checkpoint '%s': already exists (expected: a new name)", name);
        }
        if (bitmaps.find(name) != null) {
            throw invalid("checkpoint '%s': the image already has a bitmap of that name (expected: none; remove it "
                    + "with shear bitmap --remove or pick another name)", name);
        }
        Checkpoint parent = chain.newest();
        Instant created = bitmaps.atInstant(() -> {
            bitmaps.add(name, granularity, true);
            if (atSameInstant != null) {
                try {
                    atSameInstant.call();
                } catch (Exception e) {
                    bitmaps.remove(name);
                    throw e;
                }
            }
            return clock.instant().truncatedTo(ChronoUnit.SECONDS);
        });
        Checkpoint c = new Checkpoint(name, parent == null ? null : parent.name(), created, description, name);
        CheckpointChain next = chain.plus(c);
        try {
            bitmaps.flushBitmaps();
            CheckpointStore.write(image, next);
        } catch (IOException | RuntimeException e) {
            try {
                bitmaps.remove(name);
            } catch (IOException | RuntimeException e2) {
                e.addSuppressed(e2);
            }
            throw e;
        }
        chain = next;
        return c;
    }

    /**
     * Deletes checkpoint {@code name}: its children take its parent, and its bitmap is removed (if the
     * image still has it). In an older-style chain (disabled bitmaps, §7.2 model 1) its bitmap is first
     * merged into the parent's, and if it was the recording one the parent's starts recording, so
     * that "changes since the parent" stays complete.
     */
    public synchronized void delete(String name) throws IOException {
        Checkpoint c = chain.find(name);
        if (c == null) {
            throw invalid("checkpoint '%s': not found (expected: one of %s)", name, names());
        }
        BitmapInfo mine = bitmaps.find(c.bitmap());
        BitmapInfo parentBitmap = c.parent() == null ? null : bitmaps.find(chain.find(c.parent()).bitmap());
        if (mine != null && mine.usable() && parentBitmap != null && parentBitmap.usable()
                && (!mine.enabled() || !parentBitmap.enabled())) {
            bitmaps.merge(parentBitmap.name(), bitmaps.require(mine.name()));
            if (mine.enabled()) {
                bitmaps.setEnabled(parentBitmap.name(), true);
            }
        }
        if (mine != null) {
            bitmaps.remove(mine.name());
        }
        CheckpointChain next = chain.minus(name);
        bitmaps.flushBitmaps();
        CheckpointStore.write(image, next);
        chain = next;
    }

    /**
     * "Everything written since checkpoint {@code name}", frozen now (call it at the backup's snapshot
     * instant, e.g. inside {@link BitmapManager#atInstant}): a disabled, transient bitmap named
     * {@code exportName} (libvirt: {@code backup-<disk>}). For a checkpoint whose bitmap records
     * (Shear's model) it is a copy of that bitmap; for an older-style disabled one, the union of it and
     * the bitmaps of every later checkpoint descending from it.
     *
     * @throws BlockException INVALID_ARGUMENT naming the checkpoint and the bitmap when any bitmap
     *         needed is missing or inconsistent ("the next backup must be full")
     */
    public synchronized DirtyBitmap changesSince(String name, String exportName) throws IOException {
        Checkpoint c = chain.find(name);
        if (c == null) {
            throw invalid("checkpoint '%s': not found (expected: one of %s)", name, names());
        }
        Map<String, BitmapInfo> now = index(bitmaps.list());
        return bitmaps.atInstant(() -> {
            String p = problem(c, now.get(c.bitmap()));
            if (p != null) {
                throw invalid("%s", p);
            }
            DirtyBitmap first = bitmaps.require(c.bitmap());
            if (first.isEnabled()) {
                return first.copy(exportName, false, false);
            }
            List<DirtyBitmap> parts = new ArrayList<>();
            for (Checkpoint later : chain.sinceInclusive(name)) {
                String q = problem(later, now.get(later.bitmap()));
                if (q != null) {
                    throw invalid("changes since checkpoint '%s' need %s", name, q);
                }
                parts.add(bitmaps.require(later.bitmap()));
            }
            return DirtyBitmap.union(exportName, first.granularity(), parts.toArray(new DirtyBitmap[0]));
        });
    }

    /**
     * Replaces the whole chain (a client that keeps its own, as oVirt: ordered, with parent links),
     * all or nothing: refused, changing nothing, naming the first checkpoint whose bitmap is missing
     * or inconsistent, or the first that breaks the chain's rules. Bitmaps are not touched.
     */
    public synchronized void redefine(List<Checkpoint> ordered) throws IOException {
        CheckpointChain next;
        try {
            next = new CheckpointChain(ordered);
        } catch (IllegalArgumentException e) {
            throw invalid("redefine: %s", e.getMessage());
        }
        for (Status s : status(next, index(bitmaps.list()))) {
            if (!s.usable()) {
                throw invalid("redefine refused: %s", s.problem());
            }
        }
        CheckpointStore.write(image, next);
        chain = next;
    }

    /**
     * Stores every persistent bitmap of the image now, then rewrites the sidecar (the control API's
     * {@code POST /exports/E/bitmaps/flush}), with in_use clear: exact and usable after a crash until
     * the next guest change sets in_use again ({@link BitmapManager#flushBitmaps}).
     */
    public synchronized void flush() throws IOException {
        bitmaps.flushBitmaps();
        CheckpointStore.write(image, chain);
    }

    /** The image whose sidecar this is. */
    public Path image() {
        return image;
    }

    /** The manager of the image's bitmaps. */
    public BitmapManager bitmaps() {
        return bitmaps;
    }

    private String names() {
        List<String> n = new ArrayList<>();
        for (Checkpoint c : chain.list()) {
            n.add(c.name());
        }
        return n.isEmpty() ? "none" : String.join(", ", n);
    }

    private BlockException invalid(String format, Object... args) {
        return BlockException.invalid(image.toString(), -1, format, args);
    }
}
