package dev.shear.nbd.server;

import dev.shear.block.BlockDevice;
import dev.shear.block.ImageFormat;
import dev.shear.qcow2.Images;
import java.io.IOException;
import java.nio.file.Path;

/**
 * Opens the image behind an export. The default is the engine's {@link Images#open}; tests may
 * substitute devices of their own.
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

    /** The image engine's opener: raw and qcow2, format probed when not given. */
    DeviceOpener DEFAULT = Images::open;
}
