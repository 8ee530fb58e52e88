package dev.shear.systest.write;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.systest.images.ImageCase;
import dev.shear.systest.images.ImageMatrix;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearCli;
import dev.shear.systest.tools.ToolResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@code shear convert} against {@code qemu-img convert} with the same options, for every image of the
 * foundation matrix (and its internal snapshot with {@code -l}): the two outputs compare equal with
 * {@code qemu-img compare}, equal the matrix's raw reference, and Shear's qcow2 output checks clean.
 */
@RequiresTools({"qemu-img", "qemu-io"})
@Timeout(value = 600, unit = TimeUnit.SECONDS)
class ConvertDifferentialTest {
    @TempDir
    static Path matrixDir;

    @TempDir
    Path dir;

    private static List<ImageCase> matrix;
    private final QemuImg qemuImg = new QemuImg();

    /** Target variants: -O and extra options. */
    static final List<List<String>> VARIANTS = List.of(
            List.of("-O", "qcow2"),
            List.of("-O", "qcow2", "-c"),
            List.of("-O", "qcow2", "-c", "-o", "compression_type=zstd,cluster_size=4096"),
            List.of("-O", "raw"));

    @BeforeAll
    static void buildMatrix() {
        matrix = ImageMatrix.build(matrixDir);
    }

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        for (ImageCase c : matrix) {
            for (List<String> v : VARIANTS) {
                out.add(Arguments.of(c, v));
            }
        }
        return out.stream();
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void shearConvertShouldEqualQemuImgConvert(ImageCase c, List<String> variant) throws Exception {
        boolean qcow2 = variant.get(1).equals("qcow2");
        String fmt = qcow2 ? "qcow2" : "raw";
        Path shear = dir.resolve("shear." + fmt);
        Path qemu = dir.resolve("qemu." + fmt);
        convert(c, variant, shear, qemu, null);
        String ctx = c.name() + " " + variant + " (" + c.description() + ")";
        assertTrue(qemuImg.compare(shear, fmt, qemu, fmt), "shear vs qemu-img convert output: " + ctx);
        assertTrue(qemuImg.compare(shear, fmt, c.reference(), "raw"), "shear output vs reference: " + ctx);
        if (qcow2) {
            QemuImg.CheckResult check = qemuImg.check(shear, "qcow2");
            assertEquals(QemuImg.CHECK_CLEAN, check.exitCode(), ctx + "\n" + check.raw().stdout());
            if (variant.contains("-c") && check.count("allocated-clusters") > 0) {
                assertTrue(check.count("compressed-clusters") > 0, ctx + "\n" + check.raw().stdout());
            }
        }
        if (c.snapshot() != null) {
            Files.delete(shear);
            Files.delete(qemu);
            convert(c, variant, shear, qemu, "snapshot.name=" + c.snapshot());
            assertTrue(qemuImg.compare(shear, fmt, c.snapshotReference(), "raw"), "snapshot: " + ctx);
            assertTrue(qemuImg.compare(shear, fmt, qemu, fmt), "snapshot, shear vs qemu-img: " + ctx);
        }
    }

    private void convert(ImageCase c, List<String> variant, Path shear, Path qemu, String snapshot) {
        List<String> args = new ArrayList<>(List.of("convert", "-f", c.qemuFormat()));
        if (snapshot != null) {
            args.add("-l");
            args.add(snapshot);
        }
        args.addAll(variant);
        List<String> s = new ArrayList<>(args);
        s.add(c.image().toString());
        s.add(shear.toString());
        ToolResult r = ShearCli.run(s.toArray(new String[0]));
        assertEquals(0, r.exitCode(), c + " " + variant + ": " + r.stderr());
        List<String> q = new ArrayList<>(args);
        q.add(c.image().toString());
        q.add(qemu.toString());
        qemuImg.tool().check(q);
    }

    @Test
    void convertWithTargetBackingShouldCopyOnlyTheTopLayer() {
        QemuIo qemuIo = new QemuIo();
        Path base = dir.resolve("base.qcow2");
        Path top = dir.resolve("top.qcow2");
        qemuImg.create(base, "qcow2", 8L << 20);
        qemuIo.run(base, "qcow2", List.of(QemuIo.write(0x11, 0, 4L << 20)));
        qemuImg.createOverlay(top, "base.qcow2", "qcow2", -1);
        qemuIo.run(top, "qcow2", List.of(QemuIo.write(0x22, 1L << 20, 65536),
                QemuIo.writeZeroes(2L << 20, 131072, false), QemuIo.write(0x33, 6L << 20, 4096)));
        for (boolean compress : new boolean[] {false, true}) {
            Path shear = dir.resolve("s" + compress + ".qcow2");
            Path qemu = dir.resolve("q" + compress + ".qcow2");
            List<String> args = new ArrayList<>(List.of("convert", "-f", "qcow2", "-O", "qcow2", "-B",
                    "base.qcow2", "-F", "qcow2"));
            if (compress) {
                args.add("-c");
            }
            List<String> s = new ArrayList<>(args);
            s.add(top.toString());
            s.add(shear.toString());
            ToolResult r = ShearCli.run(s.toArray(new String[0]));
            assertEquals(0, r.exitCode(), r.stderr());
            List<String> q = new ArrayList<>(args);
            q.add(top.toString());
            q.add(qemu.toString());
            qemuImg.tool().check(q);
            assertTrue(qemuImg.compare(shear, "qcow2", qemu, "qcow2"), "compress=" + compress);
            assertTrue(qemuImg.compare(shear, "qcow2", top, "qcow2"), "compress=" + compress);
            assertEquals(QemuImg.CHECK_CLEAN, qemuImg.check(shear, "qcow2").exitCode());
            assertEquals("base.qcow2", qemuImg.infoJson(shear, "qcow2").get("backing-filename").asText());
            // only the top layer's clusters were copied
            long shearAlloc = qemuImg.check(shear, "qcow2").count("allocated-clusters");
            long qemuAlloc = qemuImg.check(qemu, "qcow2").count("allocated-clusters");
            assertEquals(qemuAlloc, shearAlloc, "compress=" + compress);
        }
    }
}
