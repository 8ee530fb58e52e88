package dev.shear.qcow2;

import dev.shear.block.BlockDevice;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import dev.shear.block.ImageFormat;
import dev.shear.block.ImageProbe;
import dev.shear.block.RawImage;
import java.io.IOException;
import java.nio.file.Path;

/**
 * The one way to open an image by path: an explicit format always wins; without one the format is
 * probed by magic (safe for the image the user names; backing files use their recorded format).
 */
public final class Images {
    private Images() {
    }

    /**
     * Opens {@code image}.
     *
     * @param format   the format, or null to probe
     * @param readOnly open read-only
     * @param snapshot an internal snapshot (id or name) to open read-only, or null for the active image
     */
    public static BlockDevice open(Path image, ImageFormat format, boolean readOnly, String snapshot)
            throws IOException {
        ImageFile file = ImageFile.open(image, !readOnly && snapshot == null);
        try {
            ImageFormat f = format != null ? format : ImageProbe.probe(file);
            if (f == ImageFormat.RAW) {
                if (snapshot != null) {
                    throw BlockException.invalid(image.toString(), -1,
                            "snapshot: %s (expected: none, raw images have no snapshots)", snapshot);
                }
                return new RawImage(file);
            }
            // A read-write open of an image with the corrupt bit comes back read-only (readOnlyReason).
            Qcow2OpenOptions options = Qcow2OpenOptions.defaults().withReadOnly(readOnly).withSnapshot(snapshot);
            return Qcow2Image.open(file, options);
        } catch (IOException | RuntimeException e) {
            file.close();
            throw e;
        }
    }
}
