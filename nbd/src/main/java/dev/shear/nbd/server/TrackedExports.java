package dev.shear.nbd.server;

import dev.shear.bitmap.BitmapManager;
import dev.shear.block.BlockDevice;
import dev.shear.qcow2.Qcow2Image;
import java.io.IOException;

/**
 * Builds the device stack of an export: a writable qcow2 image gets image -> DirtyTracker through
 * its {@link BitmapManager} (in_use set on disk before this returns, so before any write is
 * accepted); the device's close, which the server runs on a clean stop and on SIGTERM, stores the
 * bitmaps and clears in_use (design.md §The block graph; dirty-bitmaps.md §4). Everything else is
 * served as opened. {@code shear serve} and the control API's {@code POST /exports} build their
 * exports with it; the control API finds the manager again with {@link BitmapManager#of} (persistent
 * checkpoints, {@code POST /exports/E/bitmaps/flush}).
 */
public final class TrackedExports {
    private TrackedExports() {
    }

    /** The device to serve for {@code opened}; on failure {@code opened} is closed. */
    public static BlockDevice stack(BlockDevice opened, boolean readOnly) throws IOException {
        if (readOnly || !(opened instanceof Qcow2Image image) || image.openedSnapshot() != null
                || image.readOnlyReason() != null) {
            return opened;
        }
        try {
            return BitmapManager.open(image, BitmapManager.Mode.TRACKING).device();
        } catch (IOException | RuntimeException e) {
            opened.close();
            throw e;
        }
    }
}
