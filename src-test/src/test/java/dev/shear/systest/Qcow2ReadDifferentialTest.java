package dev.shear.systest;

import dev.shear.block.BlockDevice;
import dev.shear.block.ImageFormat;
import dev.shear.qcow2.Images;
import dev.shear.systest.images.ImageCase;
import dev.shear.systest.images.ImageMatrix;
import dev.shear.systest.images.RandomImageGenerator;
import dev.shear.systest.images.RandomImageSpec;
import dev.shear.systest.tools.RequiresTools;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The qcow2 read engine against QEMU: every image of {@link ImageMatrix} and the seeded random images
 * are opened read-only with {@link Images#open} and read whole, in chunks of varied (unaligned) sizes;
 * every byte must equal what {@code qemu-img convert -O raw} produced. A failure names the case, how
 * it was made and the first differing guest offset.
 */
@RequiresTools({"qemu-img", "qemu-io"})
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class Qcow2ReadDifferentialTest {
    @TempDir
    static Path matrixDir;

    private static List<ImageCase> matrix;

    @BeforeAll
    static void buildMatrix() {
        matrix = ImageMatrix.build(matrixDir);
    }

    static Stream<ImageCase> matrix() {
        return matrix.stream();
    }

    static Stream<ImageCase> snapshotCases() {
        return matrix.stream().filter(c -> c.snapshot() != null);
    }

    static Stream<RandomImageSpec> randomImages() {
        return RandomImageGenerator.specs().stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("matrix")
    void readOfWholeImageShouldEqualQemuImgConvert(ImageCase c) throws IOException {
        try (BlockDevice device = Images.open(c.image(), c.format(), true, null)) {
            DeviceAssertions.assertReadsAs(device, c.reference(), c.name() + " (" + c.description() + ")",
                    c.name().hashCode());
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("matrix")
    void readOfProbedImageShouldEqualQemuImgConvert(ImageCase c) throws IOException {
        try (BlockDevice device = Images.open(c.image(), null, true, null)) {
            DeviceAssertions.assertReadsAs(device, c.reference(), c.name() + " probed (" + c.description() + ")",
                    c.name().hashCode() + 7);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("snapshotCases")
    void readOfInternalSnapshotShouldEqualQemuImgConvertOfSnapshot(ImageCase c) throws IOException {
        try (BlockDevice device = Images.open(c.image(), ImageFormat.QCOW2, true, c.snapshot())) {
            DeviceAssertions.assertReadsAs(device, c.snapshotReference(),
                    c.name() + " snapshot " + c.snapshot() + " (" + c.description() + ")", 3);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("randomImages")
    void readOfRandomImageShouldEqualQemuImgConvert(RandomImageSpec spec, @TempDir Path dir) throws IOException {
        ImageCase c = RandomImageGenerator.build(spec, dir);
        try (BlockDevice device = Images.open(c.image(), ImageFormat.QCOW2, true, null)) {
            DeviceAssertions.assertReadsAs(device, c.reference(), spec.recipe(), spec.index());
        }
    }
}
