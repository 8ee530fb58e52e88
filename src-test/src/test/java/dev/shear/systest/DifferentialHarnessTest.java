package dev.shear.systest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shear.systest.images.ImageCase;
import dev.shear.systest.tools.Json;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.RequiresTools;
import java.io.IOException;
import java.nio.file.Files;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The differential tests' comparison code run with QEMU on both sides: qemu-img's own outputs must
 * normalize (full coverage), agree with themselves, and project onto the shared info fields. If this
 * fails, the differential tests would blame Shear for a harness bug.
 */
@RequiresTools({"qemu-img", "qemu-io"})
class DifferentialHarnessTest extends ImageMatrixTest {
    private final QemuImg qemuImg = new QemuImg();

    @ParameterizedTest(name = "{0}")
    @MethodSource("matrix")
    void qemuMapShouldNormalizeAndAgreeWithItself(ImageCase c) throws IOException {
        JsonNode q = qemuImg.mapJson(c.image(), c.qemuFormat());
        List<MapRanges.Range> n = MapRanges.normalize(q, Files.size(c.reference()), "qemu-img map " + c);
        assertEquals(List.of(), MapRanges.differences(n, n, c.rawDepth()));
        assertTrue(n.size() <= q.size());
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("matrix")
    void qemuInfoShouldProjectOntoSharedFields(ImageCase c) {
        ObjectNode p = InfoDifferentialTest.project(qemuImg.infoJson(c.image(), c.qemuFormat()));
        String text = Json.pretty(p);
        assertEquals(Files.exists(c.reference()) ? p.get("virtual-size").asLong() : -1,
                c.reference().toFile().length(), text);
        assertEquals(c.qemuFormat(), p.get("format").asText(), text);
        if (c.isQcow2()) {
            assertTrue(p.at("/format-specific/data/compat").isTextual(), text);
            assertTrue(p.has("cluster-size"), text);
        }
        if (c.snapshot() != null) {
            assertEquals(c.snapshot(), p.at("/snapshots/0/name").asText(), text);
        }
    }
}
