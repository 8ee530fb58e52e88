package dev.shear.fleece.job;

import dev.shear.bitmap.DirtyBitmap;
import java.io.IOException;
import java.time.Instant;
import java.util.List;

/**
 * The checkpoints of one disk (design.md §Checkpoints and incremental backup), as backup jobs need
 * them: list, create at an instant, delete, "changes since C" as a frozen {@link DirtyBitmap}, flush.
 * {@link BitmapCheckpoints} implements it over plain in-memory dirty bitmaps (raw images: nowhere to
 * persist them); {@link PersistentCheckpoints} over the bitmap module's persistent chain (qcow2 images:
 * sidecar file and bitmaps in the image).
 *
 * <p>Instants: a backup calls {@link #create} and {@link #changesSince} from the snapshot's
 * {@code atSnapshotPoint} callback, while no guest write is in flight below the copy-before-write
 * gate, so the new checkpoint and the frozen bitmap mark the snapshot point exactly. Implementations
 * must therefore not block on guest I/O there.
 */
public interface CheckpointProvider {

    /**
     * One checkpoint.
     *
     * @param name        the checkpoint's (and its bitmap's) name
     * @param parent      the previous checkpoint, or null
     * @param created     when it was created
     * @param description free text, or null
     */
    record Checkpoint(String name, String parent, Instant created, String description) {
    }

    /** The checkpoints, oldest first. */
    List<Checkpoint> list();

    /** The checkpoint named {@code name}, or null. */
    Checkpoint find(String name);

    /**
     * Creates checkpoint {@code name} now: from this instant on every guest change is recorded for it.
     *
     * @throws dev.shear.block.BlockException INVALID_ARGUMENT when the name is taken
     */
    Checkpoint create(String name, String description) throws IOException;

    /**
     * Deletes checkpoint {@code name} (its bitmap goes; later checkpoints stay valid).
     *
     * @throws dev.shear.block.BlockException INVALID_ARGUMENT when there is no such checkpoint
     */
    void delete(String name) throws IOException;

    /**
     * A frozen copy, named {@code frozenName}, of everything written since checkpoint {@code name}
     * (or since a bitmap of that name that is not a checkpoint). Later writes do not change it.
     *
     * @throws dev.shear.block.BlockException INVALID_ARGUMENT when unknown or unusable
     */
    DirtyBitmap changesSince(String name, String frozenName) throws IOException;

    /** Makes the checkpoints durable where the implementation stores them. */
    void flush() throws IOException;

    /** True when the checkpoints are stored with the image and survive a restart of the server. */
    boolean persistent();

    /**
     * Why an incremental backup cannot start from {@code name} now (its bitmap is missing or was found
     * in_use, i.e. inconsistent: "the next backup must be full"), or null when it can, or when there is
     * no such checkpoint or bitmap.
     */
    String problem(String name);
}
