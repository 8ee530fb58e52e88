package dev.shear.systest.images;

import dev.shear.block.ImageFormat;
import java.nio.file.Path;

/**
 * One generated image and its oracle: what {@code qemu-img convert -O raw} made of it.
 *
 * @param name              short, unique, used as the test's display name
 * @param image             the image (for a chain, the top)
 * @param format            its format
 * @param reference         raw file with the guest-visible bytes, made by qemu-img (size = virtual size)
 * @param snapshot          an internal snapshot's name, or null
 * @param snapshotReference raw file with the snapshot's bytes ({@code convert -l snapshot.name=…}), or null
 * @param rawDepth          the chain depth of a raw layer (0 = the image is raw, 1 = its backing file…),
 *                          or -1: in ranges decided there qemu-img map reports filesystem holes
 * @param description       how it was made, for failure messages
 */
public record ImageCase(String name, Path image, ImageFormat format, Path reference, String snapshot,
        Path snapshotReference, int rawDepth, String description) {

    /** The qemu-img spelling of the format. */
    public String qemuFormat() {
        return format.qemuName();
    }

    public boolean isQcow2() {
        return format == ImageFormat.QCOW2;
    }

    @Override
    public String toString() {
        return name;
    }
}
