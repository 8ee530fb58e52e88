package dev.shear.systest;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.images.Damage;
import dev.shear.systest.images.ImageCase;
import dev.shear.systest.images.RandomImageGenerator;
import dev.shear.systest.images.RandomImageSpec;
import dev.shear.systest.tools.Json;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearCli;
import dev.shear.systest.tools.ToolResult;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@code shear check --output=json IMAGE} against {@code qemu-img check --output=json}: same exit status
 * (0 clean, 2 corruptions, 3 leaks only) and the same {@code corruptions}, {@code leaks} and
 * {@code check-errors} counts (a missing key counts as 0, as qemu-img omits zero values). Run on every
 * qcow2 image of the matrix and the random images (all clean), and on images damaged by
 * {@link Damage} with 4 KiB and 64 KiB clusters.
 */
@RequiresTools({"qemu-img", "qemu-io"})
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class CheckDifferentialTest extends ImageMatrixTest {
    static final List<String> COUNTS = List.of("corruptions", "leaks", "check-errors");

    private final QemuImg qemuImg = new QemuImg();

    /** qcow2 only: qemu-img check does not check raw images (exit 63). */
    static Stream<ImageCase> qcow2Matrix() {
        return matrix().filter(ImageCase::isQcow2);
    }

    static Stream<RandomImageSpec> randomImages() {
        return RandomImageGenerator.specs().stream();
    }

    static Stream<Arguments> damages() {
        return Stream.of(Damage.values()).flatMap(d -> Stream.of(
                Arguments.of(d, 4096L), Arguments.of(d, 65536L)));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("qcow2Matrix")
    void checkOfCleanImageShouldMatchQemuImgCheck(ImageCase c) {
        assertSameCheck(c.image(), c.name() + " (" + c.description() + ")");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("randomImages")
    void checkOfRandomImageShouldMatchQemuImgCheck(RandomImageSpec spec, @TempDir Path dir) {
        assertSameCheck(RandomImageGenerator.build(spec, dir).image(), spec.recipe());
    }

    @ParameterizedTest(name = "{0} cluster={1}")
    @MethodSource("damages")
    void checkOfDamagedImageShouldMatchQemuImgCheck(Damage damage, long clusterSize, @TempDir Path dir) {
        Path img = Damage.victim(dir, clusterSize);
        damage.apply(img);
        QemuImg.CheckResult q = qemuImg.check(img, "qcow2");
        assertEquals(damage.qemuCheckExit(), q.exitCode(),
                "harness: qemu-img check's verdict on " + damage + " changed:\n" + q.raw());
        assertSameCheck(img, damage + " with " + clusterSize + "-byte clusters");
    }

    private void assertSameCheck(Path image, String label) {
        QemuImg.CheckResult q = qemuImg.check(image, "qcow2");
        ToolResult s = ShearCli.run("check", "--output=json", image.toString());
        String context = label + "\nqemu-img check: exit " + q.exitCode() + "\n" + q.raw().stdout()
                + q.raw().stderr() + "\nshear check: exit " + s.exitCode() + "\n" + s.stdout() + s.stderr();
        JsonNode sj = Json.parse(s.stdout(), "shear check --output=json " + image + " (exit " + s.exitCode()
                + ", stderr: " + s.stderr().strip() + ")");
        for (String key : COUNTS) {
            long qv = q.count(key);
            long sv = sj.has(key) ? sj.get(key).asLong() : 0;
            assertEquals(qv, sv, "\"" + key + "\" of " + context);
        }
        assertEquals(q.exitCode(), s.exitCode(), "exit status of " + context);
    }
}
