package dev.shear.block;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Format detection by magic (qcow2: "QFI\xfb" at offset 0; anything else is raw). An explicit format
 * always wins over probing; probing a backing file whose format is not recorded is what QEMU warns
 * about, so callers use it only when the user gave no format.
 */
public final class ImageProbe {
    /** "QFI\xfb" (qcow2-format.md §2.1). */
    public static final int QCOW2_MAGIC = 0x514649fb;

    private ImageProbe() {
    }

    public static ImageFormat probe(ImageFile file) throws IOException {
        if (file.size() < 4) {
            return ImageFormat.RAW;
        }
        ByteBuffer magic = ByteBuffer.allocate(4);
        file.read(0, magic);
        return magic.getInt(0) == QCOW2_MAGIC ? ImageFormat.QCOW2 : ImageFormat.RAW;
    }
}
