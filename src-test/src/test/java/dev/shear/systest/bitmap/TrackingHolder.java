package dev.shear.systest.bitmap;

import dev.shear.bitmap.BitmapManager;
import dev.shear.block.ImageFormat;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2Image;
import java.nio.ByteBuffer;
import java.nio.file.Path;

/**
 * A process that holds a qcow2 image read-write with bitmap tracking, writes once, says READY and
 * waits to be killed (PersistentBitmapWriteDifferentialTest's crash).
 */
public final class TrackingHolder {
    private TrackingHolder() {
    }

    public static void main(String[] args) throws Exception {
        Qcow2Image image = (Qcow2Image) Images.open(Path.of(args[0]), ImageFormat.QCOW2, false, null);
        BitmapManager m = BitmapManager.open(image, BitmapManager.Mode.TRACKING);
        m.device().write(0, ByteBuffer.allocate(4096), 0);
        m.device().flush();
        System.out.println("READY");
        System.out.flush();
        Thread.sleep(Long.MAX_VALUE);
    }
}
