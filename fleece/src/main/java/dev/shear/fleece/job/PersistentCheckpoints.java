package dev.shear.fleece.job;

import dev.shear.bitmap.BitmapManager;
import dev.shear.bitmap.DirtyBitmap;
import dev.shear.bitmap.checkpoint.Checkpoints;
import dev.shear.block.BlockException;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * A {@link CheckpointProvider} over the persistent checkpoint chain of a qcow2 image served
 * writable (design.md §Checkpoints and incremental backup; dirty-bitmaps.md §7): the chain lives in
 * the sidecar {@code IMAGE.checkpoints}, each checkpoint's bitmap in the image, changed through the
 * image's {@link BitmapManager} (TRACKING mode). So a checkpoint created by the control API is the one
 * {@code shear checkpoint list IMAGE} shows, and it survives a restart of the server.
 *
 * <h2>Instants</h2>
 * {@link Checkpoints} marks instants with {@link BitmapManager#atInstant}, the write side of the
 * manager's quiesce lock, whose read side every guest change holds inside the manager's tracking
 * device. In a {@link ManagedDisk} that device sits below copy-before-write, and a backup calls
 * {@link #create} and {@link #changesSince} while the copy-before-write gate is exclusive: no guest
 * change is then inside the tracking device, so the quiesce lock is free and nothing waits for guest
 * I/O. Outside a snapshot ({@code POST /exports/E/checkpoints}) the lock drains the changes in flight,
 * which is what makes the new bitmap start at one instant.
 *
 * <p>{@link #create} and {@link #delete} store the bitmaps and rewrite the sidecar (fsync) before they
 * return, as {@link Checkpoints} does for the offline command line; at a snapshot point the guest's
 * writes wait at the gate for that store (metadata only: the bitmap tables and one small file).
 *
 * <p>Unlike {@link BitmapCheckpoints}, a checkpoint may be unusable: its bitmap was found in_use
 * (the image was not closed cleanly) or is missing. {@link #problem} says why, with the words of
 * {@code shear checkpoint list}; {@link #changesSince} refuses it ("the next backup must be full").
 *
 * <p>Thread-safe: {@link Checkpoints} and {@link BitmapManager} synchronize.
 */
public final class PersistentCheckpoints implements CheckpointProvider {
    private final Checkpoints checkpoints;
    private final long granularity;

    private PersistentCheckpoints(Checkpoints checkpoints, long granularity) {
        this.checkpoints = checkpoints;
        this.granularity = granularity;
    }

    /**
     * The checkpoints of the image behind {@code bitmaps} (its sidecar read now).
     *
     * @param granularity bytes per bit of new checkpoint bitmaps, 0 for the manager's default
     *                    (qemu-img's: the cluster size clamped to 4 KiB..64 KiB)
     * @throws BlockException INVALID_FORMAT for a damaged sidecar, naming the file and the line
     */
    public static PersistentCheckpoints open(BitmapManager bitmaps, long granularity) throws IOException {
        Objects.requireNonNull(bitmaps, "bitmaps");
        return new PersistentCheckpoints(Checkpoints.open(bitmaps.image().file().path(), bitmaps), granularity);
    }

    /** The chain and its sidecar (redefinition, the control API's listing). */
    public Checkpoints checkpoints() {
        return checkpoints;
    }

    /** The image's bitmaps. */
    public BitmapManager bitmaps() {
        return checkpoints.bitmaps();
    }

    @Override
    public List<Checkpoint> list() {
        List<Checkpoint> out = new ArrayList<>();
        for (dev.shear.bitmap.checkpoint.Checkpoint c : checkpoints.chain().list()) {
            out.add(convert(c));
        }
        return out;
    }

    @Override
    public Checkpoint find(String name) {
        dev.shear.bitmap.checkpoint.Checkpoint c = checkpoints.chain().find(name);
        return c == null ? null : convert(c);
    }

    @Override
    public Checkpoint create(String name, String description) throws IOException {
        return convert(checkpoints.create(name, description, granularity, null));
    }

    @Override
    public void delete(String name) throws IOException {
        checkpoints.delete(name);
    }

    /**
     * {@inheritDoc} A name that is not a checkpoint but a usable bitmap of the image is accepted, as
     * {@link BitmapCheckpoints} accepts an attached bitmap.
     */
    @Override
    public DirtyBitmap changesSince(String name, String frozenName) throws IOException {
        if (checkpoints.chain().find(name) != null) {
            return checkpoints.changesSince(name, frozenName);
        }
        BitmapManager bitmaps = bitmaps();
        if (bitmaps.find(name) == null) {
            throw BlockException.invalid(checkpoints.image().toString(), -1, "checkpoint '%s': not found "
                    + "(expected: a checkpoint or a bitmap of the image)", name);
        }
        return bitmaps.atInstant(() -> bitmaps.require(name).copy(frozenName, false, false));
    }

    /** Stores every bitmap of the image (in_use clear until the next guest write) and rewrites the sidecar. */
    @Override
    public void flush() throws IOException {
        checkpoints.flush();
    }

    @Override
    public boolean persistent() {
        return true;
    }

    @Override
    public String problem(String name) {
        for (Checkpoints.Status s : checkpoints.list()) {
            if (s.checkpoint().name().equals(name)) {
                return s.problem();
            }
        }
        BitmapManager.BitmapInfo b = bitmaps().find(name);
        return b == null || b.usable() ? null : b.problem();
    }

    /** The sidecar keeps an absent description as "": the API says null, as for in-memory checkpoints. */
    private static Checkpoint convert(dev.shear.bitmap.checkpoint.Checkpoint c) {
        return new Checkpoint(c.name(), c.parent(), c.created(), c.description().isEmpty() ? null : c.description());
    }
}
