package dev.shear.fleece.job;

import dev.shear.bitmap.DirtyBitmap;
import dev.shear.bitmap.DirtyTracker;
import dev.shear.block.BlockException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * A {@link CheckpointProvider} over in-memory dirty bitmaps attached to a {@link DirtyTracker}: each
 * checkpoint owns one enabled bitmap named after it, created at the checkpoint's instant and left
 * enabled (libvirt's model, design.md §Checkpoints). Nothing is persisted ({@link #flush} does
 * nothing): what raw images get, having nowhere to store bitmaps; qcow2 images served writable get
 * {@link PersistentCheckpoints}.
 *
 * <p>"Changes since C" is the union of C's bitmap and every later checkpoint's, which equals C's
 * bitmap alone in the all-enabled model and is still right for chains where older bitmaps were
 * disabled (dirty-bitmaps.md §7). A name that is not a checkpoint but an attached bitmap (one loaded
 * from the image) is accepted too: its bitmap alone is the answer.
 *
 * <p>Thread-safe: every method is synchronized; none does guest I/O.
 */
public final class BitmapCheckpoints implements CheckpointProvider {
    private final DirtyTracker tracker;
    private final long granularity;
    /** Oldest first; guarded by this. */
    private final List<Checkpoint> chain = new ArrayList<>();
    /** Parallel to chain; guarded by this. */
    private final List<DirtyBitmap> bitmaps = new ArrayList<>();

    /** @param granularity bytes per bit of new checkpoint bitmaps (a power of two, >= 512) */
    public BitmapCheckpoints(DirtyTracker tracker, long granularity) {
        this.tracker = Objects.requireNonNull(tracker, "tracker");
        this.granularity = granularity;
    }

    @Override
    public synchronized List<Checkpoint> list() {
        return List.copyOf(chain);
    }

    @Override
    public synchronized Checkpoint find(String name) {
        int i = indexOf(name);
        return i < 0 ? null : chain.get(i);
    }

    @Override
    public synchronized Checkpoint create(String name, String description) throws BlockException {
        checkName(name);
        if (indexOf(name) >= 0 || bitmapNamed(name) != null) {
            throw BlockException.invalid(tracker.name(), -1, "checkpoint '%s': name already used (expected: new)",
                    name);
        }
        DirtyBitmap b = DirtyBitmap.create(name, tracker.size(), granularity, true, true);
        tracker.attach(b);
        String parent = chain.isEmpty() ? null : chain.get(chain.size() - 1).name();
        Checkpoint c = new Checkpoint(name, parent, Instant.now(), description);
        chain.add(c);
        bitmaps.add(b);
        return c;
    }

    @Override
    public synchronized void delete(String name) throws BlockException {
        int i = indexOf(name);
        if (i < 0) {
            throw BlockException.invalid(tracker.name(), -1, "checkpoint '%s': not found (expected: one of %s)",
                    name, names());
        }
        tracker.detach(bitmaps.get(i));
        // The child of the deleted checkpoint now descends from its parent.
        if (i + 1 < chain.size()) {
            Checkpoint child = chain.get(i + 1);
            chain.set(i + 1, new Checkpoint(child.name(), chain.get(i).parent(), child.created(),
                    child.description()));
        }
        chain.remove(i);
        bitmaps.remove(i);
    }

    @Override
    public synchronized DirtyBitmap changesSince(String name, String frozenName) throws BlockException {
        int i = indexOf(name);
        if (i >= 0) {
            List<DirtyBitmap> since = bitmaps.subList(i, bitmaps.size());
            DirtyBitmap first = since.get(0);
            if (since.size() == 1) {
                return first.copy(frozenName, false, false);
            }
            return DirtyBitmap.union(frozenName, first.granularity(), since.toArray(new DirtyBitmap[0]));
        }
        DirtyBitmap b = bitmapNamed(name);
        if (b == null) {
            throw BlockException.invalid(tracker.name(), -1, "checkpoint '%s': not found (expected: one of %s)",
                    name, names());
        }
        return b.copy(frozenName, false, false);
    }

    @Override
    public void flush() {
        // In memory only.
    }

    @Override
    public boolean persistent() {
        return false;
    }

    /** In-memory bitmaps are never inconsistent: always null. */
    @Override
    public String problem(String name) {
        return null;
    }

    /** The bitmap of checkpoint {@code name}, or null (tests, the control API's bitmap listing). */
    public synchronized DirtyBitmap bitmapOf(String name) {
        int i = indexOf(name);
        return i < 0 ? null : bitmaps.get(i);
    }

    private DirtyBitmap bitmapNamed(String name) {
        for (DirtyBitmap b : tracker.bitmaps()) {
            if (b.name().equals(name)) {
                return b;
            }
        }
        return null;
    }

    private int indexOf(String name) {
        for (int i = 0; i < chain.size(); i++) {
            if (chain.get(i).name().equals(name)) {
                return i;
            }
        }
        return -1;
    }

    private List<String> names() {
        List<String> n = new ArrayList<>();
        for (Checkpoint c : chain) {
            n.add(c.name());
        }
        return n;
    }

    private void checkName(String name) throws BlockException {
        if (name == null || name.isEmpty() || name.length() > 1023) {
            throw BlockException.invalid(tracker.name(), -1, "checkpoint name: '%s' (expected: 1..1023 characters)",
                    name);
        }
    }
}
