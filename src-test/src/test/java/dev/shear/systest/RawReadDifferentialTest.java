package dev.shear.systest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.shear.block.BlockDevice;
import dev.shear.block.ImageFormat;
import dev.shear.qcow2.Images;
import dev.shear.systest.images.ImageMatrix;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import dev.shear.systest.tools.RequiresTools;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Raw images made by qemu-img and qemu-io read back through {@link Images#open} byte for byte. */
@RequiresTools({"qemu-img", "qemu-io"})
class RawReadDifferentialTest {
    private final QemuImg qemuImg = new QemuImg();

    private Path rawImage(Path dir) {
        Path img = dir.resolve("disk.img");
        qemuImg.create(img, "raw", 3 * ImageMatrix.MIB + 512);
        Path data = dir.resolve("random.bin");
        ImageMatrix.writeRandomFile(data, 100_000, 1234);
        new QemuIo().run(img, "raw", List.of(
                QemuIo.write(0x5a, 0, 4096),
                QemuIo.write(0xa5, ImageMatrix.MIB + 1, 70_000),
                QemuIo.writeFrom(data, 2 * ImageMatrix.MIB - 7, 100_000),
                QemuIo.write(0xff, 3 * ImageMatrix.MIB + 511, 1)));
        return img;
    }

    @Test
    void rawImageShouldReadAsItsBytes(@TempDir Path dir) throws IOException {
        Path img = rawImage(dir);
        try (BlockDevice device = Images.open(img, ImageFormat.RAW, true, null)) {
            DeviceAssertions.assertReadsAs(device, img, "raw (explicit format)", 0);
        }
    }

    @Test
    void probedRawImageShouldReadAsQemuImgConvertOutput(@TempDir Path dir) throws IOException {
        Path img = rawImage(dir);
        Path ref = dir.resolve("ref.raw");
        qemuImg.convertToRaw(img, "raw", ref);
        try (BlockDevice device = Images.open(img, null, true, null)) {
            assertEquals(3 * ImageMatrix.MIB + 512, device.size());
            DeviceAssertions.assertReadsAs(device, ref, "raw (probed)", 5);
        }
    }

    @Test
    void snapshotOfRawImageShouldBeRefused(@TempDir Path dir) {
        Path img = rawImage(dir);
        assertThrows(IOException.class, () -> Images.open(img, ImageFormat.RAW, true, "snap1").close());
    }
}
