package dev.shear.systest;

import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.images.ImageCase;
import dev.shear.systest.images.RandomImageGenerator;
import dev.shear.systest.images.RandomImageSpec;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearCli;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@code shear map --output=json IMAGE} against {@code qemu-img map --output=json}: both must cover the
 * whole disk and agree on (depth, present, zero, data) for every byte range, after the normalization
 * of {@link MapRanges} (merge adjacent equal entries, ignore {@code offset}; raw layers relaxed).
 */
@RequiresTools({"qemu-img", "qemu-io"})
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class MapDifferentialTest extends ImageMatrixTest {
    private final QemuImg qemuImg = new QemuImg();

    static Stream<RandomImageSpec> randomImages() {
        return RandomImageGenerator.specs().stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("matrix")
    void mapShouldMatchQemuImgMap(ImageCase c) throws IOException {
        assertSameMap(c, c.name() + " (" + c.description() + ")");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("randomImages")
    void mapOfRandomImageShouldMatchQemuImgMap(RandomImageSpec spec, @TempDir Path dir) throws IOException {
        assertSameMap(RandomImageGenerator.build(spec, dir), spec.recipe());
    }

    private void assertSameMap(ImageCase c, String label) throws IOException {
        long size = Files.size(c.reference());
        JsonNode q = qemuImg.mapJson(c.image(), c.qemuFormat());
        JsonNode s = ShearCli.json("map", "--output=json", c.image().toString());
        List<MapRanges.Range> qn = MapRanges.normalize(q, size, "qemu-img map");
        List<MapRanges.Range> sn = MapRanges.normalize(s, size, "shear map");
        List<String> diffs = MapRanges.differences(qn, sn, c.rawDepth());
        if (!diffs.isEmpty()) {
            fail(label + ": shear map differs from qemu-img map in " + diffs.size() + "+ range(s):\n  "
                    + String.join("\n  ", diffs)
                    + "\nqemu-img (normalized):\n" + MapRanges.render(qn)
                    + "shear (normalized):\n" + MapRanges.render(sn));
        }
    }
}
