package dev.shear.systest.images;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.RequiresTools;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The matrix is what it claims: valid per qemu-img, with faithful references and the promised features. */
@RequiresTools({"qemu-img", "qemu-io"})
class ImageMatrixTest {
    @TempDir
    static Path dir;

    private static List<ImageCase> matrix;
    private static long buildMillis;
    private final QemuImg qemuImg = new QemuImg();

    @BeforeAll
    static void build() {
        long t = System.nanoTime();
        matrix = ImageMatrix.build(dir);
        buildMillis = (System.nanoTime() - t) / 1_000_000;
        System.out.println("ImageMatrix: " + matrix.size() + " cases in " + buildMillis + " ms");
    }

    static Stream<ImageCase> matrix() {
        return matrix.stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("matrix")
    void imageShouldPassQemuImgCheckAndEqualItsReference(ImageCase c) throws IOException {
        if (c.isQcow2()) {
            QemuImg.CheckResult r = qemuImg.check(c.image(), "qcow2");
            assertEquals(0, r.exitCode(), c.name() + ": " + r.raw());
        }
        JsonNode info = qemuImg.infoJson(c.image(), c.qemuFormat());
        assertEquals(info.get("virtual-size").asLong(), Files.size(c.reference()), c.name() + ": reference size");
        assertTrue(qemuImg.compare(c.image(), c.qemuFormat(), c.reference(), "raw"), c.name());
        assertTrue(info.get("virtual-size").asLong() <= 64L << 20, c.name() + " must stay small");
    }

    @Test
    void namesShouldBeUnique() {
        Set<String> names = new HashSet<>();
        for (ImageCase c : matrix) {
            assertTrue(names.add(c.name()), "duplicate " + c.name());
        }
    }

    @Test
    void matrixShouldHaveTheFeaturesItPromises() {
        assertEquals("zstd", data("zstd-64k").get("compression-type").asText());
        assertEquals("zlib", data("deflate-64k").get("compression-type").asText());
        assertTrue(data("el2-2m").get("extended-l2").asBoolean());
        assertEquals("0.10", data("v2").get("compat").asText());
        assertEquals(1, data("refcount1").get("refcount-bits").asInt());
        assertEquals(64, data("refcount64").get("refcount-bits").asInt());
        assertEquals(2, data("bitmaps").get("bitmaps").size());
        assertEquals(2097152, info("c2m").get("cluster-size").asLong());
        assertEquals(512, info("c512").get("cluster-size").asLong());
        assertEquals("mid.qcow2", info("chain").get("backing-filename").asText());
        assertEquals("base.raw", info("chain-mid").get("backing-filename").asText());
        assertEquals(2, info("snapshot").get("snapshots").size());
        assertTrue(info("odd-64k").get("virtual-size").asLong() % 65536 != 0);
        assertTrue(info("odd-2m").get("virtual-size").asLong() < 2097152);
        String compressedMap = qemuImg.mapJson(byName("deflate-64k").image(), "qcow2").toString();
        assertFalse(compressedMap.isEmpty());
    }

    @Test
    void snapshotShouldDifferFromActiveImage() {
        ImageCase c = byName("snapshot");
        assertNotNull(c.snapshotReference());
        assertFalse(qemuImg.compare(c.reference(), "raw", c.snapshotReference(), "raw"));
    }

    @Test
    void zeroClustersShouldExistWithAndWithoutAllocation() {
        JsonNode map = qemuImg.mapJson(byName("zeroes").image(), "qcow2");
        boolean zeroAlloc = false;
        boolean zeroPlain = false;
        for (JsonNode e : map) {
            if (e.get("zero").asBoolean() && e.get("depth").asInt() == 0 && e.get("present").asBoolean()) {
                zeroAlloc |= e.has("offset");
                zeroPlain |= !e.has("offset");
            }
        }
        assertTrue(zeroAlloc && zeroPlain, "zeroes: " + map);
    }


    private JsonNode info(String name) {
        ImageCase c = byName(name);
        return qemuImg.infoJson(c.image(), c.qemuFormat());
    }

    private JsonNode data(String name) {
        return info(name).get("format-specific").get("data");
    }

    private static ImageCase byName(String name) {
        return matrix.stream().filter(c -> c.name().equals(name)).findFirst()
                .orElseThrow(() -> new AssertionError("no case " + name));
    }
}
