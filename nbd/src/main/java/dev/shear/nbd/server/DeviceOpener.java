package dev.shear.nbd.server;

import dev.shear.block.BlockDevice;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import dev.shear.block.ImageFormat;
import dev.shear.block.ImageProbe;
import dev.shear.block.RawImage;
import java.io.IOException;
import java.nio.file.Path;

/**
 * Opens the image behind an export. The default opens raw images and refuses qcow2 until the qcow2
 * engine is wired in (its opener, {@code dev.shear.qcow2.Images.open}, has this same shape).
 */
@FunctionalInterface
public interface DeviceOpener {

    /**
     * @param image          the image file
     * @param formatOrNull   the format the user gave, or null to probe by magic
     * @param readOnly       open without write access
     * @param snapshotOrNull an internal snapshot to open read-only (qcow2 only), or null
     */
    BlockDevice open(Path image, ImageFormat formatOrNull, boolean readOnly, String snapshotOrNull)
            throws IOException;

    /** Raw images only for now. */
    DeviceOpener DEFAULT = (image, formatOrNull, readOnly, snapshotOrNull) -> {
        ImageFormat format = formatOrNull;
        if (format == null) {
            try (ImageFile probe = ImageFile.open(image, false)) {
                format = ImageProbe.probe(probe);
            }
        }
        if (format == ImageFormat.QCOW2) {
            throw BlockException.unsupported(image.toString(), -1, "qcow2 engine not yet wired");
        }
        if (snapshotOrNull != null) {
            throw BlockException.unsupported(image.toString(), -1,
                    "snapshot: %s (expected: none; raw images have no internal snapshots)", snapshotOrNull);
        }
        return RawImage.open(image, !readOnly);
    };
}
