package dev.shear.bitmap.checkpoint;

import java.time.Instant;
import java.util.Objects;

/**
 * One checkpoint of a disk image.
 *
 * @param name        unique in the chain; non-empty
 * @param parent      the previous checkpoint's name, or null for the first of a chain
 * @param created     when the checkpoint's bitmap started recording
 * @param description free text, may be empty, never null
 * @param bitmap      the persistent bitmap of the image that records changes since this checkpoint
 *                    (libvirt and Shear: the checkpoint's own name)
 */
public record Checkpoint(String name, String parent, Instant created, String description, String bitmap) {
    public Checkpoint {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(created, "created");
        Objects.requireNonNull(bitmap, "bitmap");
        description = description == null ? "" : description;
        if (name.isEmpty()) {
            throw new IllegalArgumentException("checkpoint name: empty (expected: at least one character)");
        }
        if (bitmap.isEmpty()) {
            throw new IllegalArgumentException("checkpoint '" + name + "': bitmap name empty");
        }
        if (name.equals(parent)) {
            throw new IllegalArgumentException("checkpoint '" + name + "': its own parent");
        }
    }

    /** This checkpoint under another parent (re-parenting after a delete). */
    public Checkpoint withParent(String newParent) {
        return new Checkpoint(name, newParent, created, description, bitmap);
    }
}
