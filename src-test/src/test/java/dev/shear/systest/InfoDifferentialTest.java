package dev.shear.systest;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shear.systest.images.ImageCase;
import dev.shear.systest.images.RandomImageGenerator;
import dev.shear.systest.images.RandomImageSpec;
import dev.shear.systest.tools.Json;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearCli;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@code shear info --output=json IMAGE} against {@code qemu-img info --output=json} on the fields
 * both must agree on (see {@link #project}). Both outputs are projected onto those fields, then
 * compared as pretty, key-sorted JSON text so a failure shows a line diff. Missing, null and empty
 * arrays are the same ("absent"): qemu-img omits {@code snapshots} and {@code bitmaps} when there are
 * none and omits v3-only keys for v2 images.
 */
@RequiresTools({"qemu-img", "qemu-io"})
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class InfoDifferentialTest extends ImageMatrixTest {
    static final List<String> TOP = List.of("virtual-size", "format", "cluster-size", "backing-filename",
            "backing-filename-format", "dirty-flag");
    static final List<String> SNAPSHOT = List.of("id", "name", "vm-state-size", "date-sec", "date-nsec",
            "vm-clock-sec", "vm-clock-nsec");
    static final List<String> DATA = List.of("compat", "compression-type", "lazy-refcounts", "refcount-bits",
            "corrupt", "extended-l2");
    static final List<String> BITMAP = List.of("name", "granularity");

    private final QemuImg qemuImg = new QemuImg();

    static Stream<RandomImageSpec> randomImages() {
        return RandomImageGenerator.specs().stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("matrix")
    void infoShouldMatchQemuImgInfo(ImageCase c) {
        assertSameInfo(c, c.name() + " (" + c.description() + ")");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("randomImages")
    void infoOfRandomImageShouldMatchQemuImgInfo(RandomImageSpec spec, @TempDir Path dir) {
        assertSameInfo(RandomImageGenerator.build(spec, dir), spec.recipe());
    }

    private void assertSameInfo(ImageCase c, String label) {
        JsonNode q = qemuImg.infoJson(c.image(), c.qemuFormat());
        JsonNode s = ShearCli.json("info", "--output=json", c.image().toString());
        assertEquals(Json.pretty(project(q)), Json.pretty(project(s)),
                label + ": shear info (actual) vs qemu-img info (expected), on the shared fields");
    }

    /** The shared fields only; absent, null and empty arrays are left out; bitmap flags sorted. */
    static ObjectNode project(JsonNode info) {
        ObjectNode o = Json.MAPPER.createObjectNode();
        copy(info, o, TOP);
        JsonNode snaps = info.get("snapshots");
        if (snaps != null && snaps.isArray() && snaps.size() > 0) {
            ArrayNode a = o.putArray("snapshots");
            for (JsonNode sn : snaps) {
                copy(sn, a.addObject(), SNAPSHOT);
            }
        }
        JsonNode fs = info.get("format-specific");
        if (fs != null && fs.isObject()) {
            ObjectNode f = o.putObject("format-specific");
            copy(fs, f, List.of("type"));
            JsonNode data = fs.get("data");
            if (data != null && data.isObject()) {
                ObjectNode d = f.putObject("data");
                copy(data, d, DATA);
                JsonNode bitmaps = data.get("bitmaps");
                if (bitmaps != null && bitmaps.isArray() && bitmaps.size() > 0) {
                    ArrayNode a = d.putArray("bitmaps");
                    for (JsonNode b : bitmaps) {
                        ObjectNode pb = a.addObject();
                        copy(b, pb, BITMAP);
                        List<String> flags = new ArrayList<>();
                        b.path("flags").forEach(x -> flags.add(x.asText()));
                        flags.sort(null);
                        ArrayNode fa = pb.putArray("flags");
                        flags.forEach(fa::add);
                    }
                }
            }
        }
        return o;
    }

    private static void copy(JsonNode from, ObjectNode to, List<String> keys) {
        for (String k : keys) {
            JsonNode v = from.get(k);
            if (v != null && !v.isNull()) {
                to.set(k, v);
            }
        }
    }
}
