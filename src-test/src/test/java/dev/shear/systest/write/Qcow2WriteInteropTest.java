package dev.shear.systest.write;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.block.BlockDevice;
import dev.shear.block.ImageFormat;
import dev.shear.qcow2.Images;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearCli;
import dev.shear.systest.tools.ToolResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The write engine against QEMU: images made by {@code shear create} pass {@code qemu-img info/check};
 * images written by Shear (made by Shear or by QEMU, with and without backing files, compressed
 * clusters, snapshots, subclusters) check clean with {@code qemu-img check} and {@code qemu-img compare}
 * equal to the model of what was written. Seeds are printed in failures; {@code -Dshear.seed} replays.
 */
@RequiresTools({"qemu-img", "qemu-io"})
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class Qcow2WriteInteropTest {
    @TempDir
    Path dir;

    private final QemuImg qemuImg = new QemuImg();
    private final QemuIo qemuIo = new QemuIo();

    @ParameterizedTest
    @ValueSource(strings = {"", "cluster_size=512", "cluster_size=4096", "cluster_size=2M", "compat=0.10",
        "compat=1.1,lazy_refcounts=on", "compression_type=zstd", "extended_l2=on", "refcount_bits=1",
        "refcount_bits=64", "preallocation=metadata", "preallocation=full", "cluster_size=512,refcount_bits=1"})
    void shearCreateShouldBeAcceptedByQemuImg(String options) {
        Path img = dir.resolve("c.qcow2");
        ToolResult r = options.isEmpty() ? ShearCli.run("create", "-f", "qcow2", img.toString(), "64M")
                : ShearCli.run("create", "-f", "qcow2", "-o", options, img.toString(), "64M");
        assertEquals(0, r.exitCode(), r.stderr());
        JsonNode info = qemuImg.infoJson(img, "qcow2");
        assertEquals(64L << 20, info.get("virtual-size").asLong());
        QemuImg.CheckResult check = qemuImg.check(img, "qcow2");
        assertEquals(QemuImg.CHECK_CLEAN, check.exitCode(),
                options + ": " + check.raw().stdout() + check.raw().stderr());
        if (options.contains("cluster_size=2M")) {
            assertEquals(2 << 20, info.get("cluster-size").asInt());
        }
        if (options.contains("compat=0.10")) {
            assertEquals("0.10", info.get("format-specific").get("data").get("compat").asText());
        }
        if (options.contains("extended_l2")) {
            assertTrue(info.get("format-specific").get("data").get("extended-l2").asBoolean());
        }
        if (options.contains("zstd")) {
            assertEquals("zstd", info.get("format-specific").get("data").get("compression-type").asText());
        }
        if (options.contains("refcount_bits=64")) {
            assertEquals(64, info.get("format-specific").get("data").get("refcount-bits").asInt());
        }
    }

    @Test
    void shearCreateRawAndOverlayShouldBeAcceptedByQemuImg() throws IOException {
        Path raw = dir.resolve("base.raw");
        assertEquals(0, ShearCli.run("create", "-f", "raw", raw.toString(), "3M").exitCode());
        assertEquals(3L << 20, Files.size(raw));
        Path ov = dir.resolve("ov.qcow2");
        ToolResult r = ShearCli.run("create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", ov.toString());
        assertEquals(0, r.exitCode(), r.stderr());
        JsonNode info = qemuImg.infoJson(ov, "qcow2");
        assertEquals(3L << 20, info.get("virtual-size").asLong());
        assertEquals("base.raw", info.get("backing-filename").asText());
        assertEquals("raw", info.get("backing-filename-format").asText());
        assertEquals(QemuImg.CHECK_CLEAN, qemuImg.check(ov, "qcow2").exitCode());
        assertEquals(2, ShearCli.run("create", "-f", "qcow2", "-b", "base.raw", ov.toString()).exitCode());
    }

    @ParameterizedTest
    @ValueSource(strings = {"cluster_size=65536", "cluster_size=512", "cluster_size=4096,refcount_bits=1",
        "compat=0.10", "extended_l2=on", "lazy_refcounts=on", "cluster_size=2M", "refcount_bits=64"})
    void randomWritesShouldCheckCleanAndCompareEqual(String options) throws IOException {
        for (boolean backing : new boolean[] {false, true}) {
            long seed = Long.getLong("shear.seed", System.nanoTime());
            String ctx = options + (backing ? " backing" : "") + " seed=" + seed;
            long size = options.contains("2M") ? 8L << 20 : 3L << 20;
            Path img = dir.resolve("w.qcow2");
            Path base = dir.resolve("b.qcow2");
            Files.deleteIfExists(img);
            byte[] model = new byte[(int) size];
            long backingSize = 0;
            if (backing) {
                backingSize = size / 2;
                qemuImg.create(base, "qcow2", backingSize);
                qemuIo.run(base, "qcow2", List.of(QemuIo.write(0x5a, 0, backingSize / 2),
                        QemuIo.write(0xa5, backingSize / 2 + 4096, 100_000)));
                Path raw = dir.resolve("b.raw");
                qemuImg.convertToRaw(base, "qcow2", raw);
                byte[] b = Files.readAllBytes(raw);
                System.arraycopy(b, 0, model, 0, b.length);
                assertEquals(0, ShearCli.run("create", "-f", "qcow2", "-o", options, "-b", "b.qcow2", "-F", "qcow2",
                        img.toString(), Long.toString(size)).exitCode(), ctx);
            } else {
                assertEquals(0, ShearCli.run("create", "-f", "qcow2", "-o", options, img.toString(),
                        Long.toString(size)).exitCode(), ctx);
            }
            int cs = qemuImg.infoJson(img, "qcow2").get("cluster-size").asInt();
            int version = options.contains("0.10") ? 2 : 3;
            try (BlockDevice d = Images.open(img, ImageFormat.QCOW2, false, null)) {
                new RandomWriter(d, model, cs, version, backingSize, seed).run(cs >= (2 << 20) ? 150 : 1500);
            }
            assertQemuAgrees(img, model, ctx);
        }
    }

    @Test
    void qemuMadeImagesShouldCheckCleanAfterShearWrites() throws IOException {
        long seed = Long.getLong("shear.seed", System.nanoTime());
        long size = 4L << 20;
        Path src = dir.resolve("src.raw");
        byte[] pattern = new byte[(int) size];
        new SplittableRandom(seed).nextBytes(pattern);
        for (int i = 0; i < pattern.length; i += 8192) {
            java.util.Arrays.fill(pattern, i, Math.min(pattern.length, i + 4096), (byte) (i >> 13)); // compressible
        }
        Files.write(src, pattern);
        String[][] cases = {
            {"compressed", "cluster_size=65536"},
            {"compressed-zstd", "compression_type=zstd"},
            {"snapshot", "cluster_size=4096"},
            {"zeroes-extl2", "extended_l2=on"},
            {"v2", "compat=0.10"},
        };
        for (String[] c : cases) {
            String ctx = c[0] + " seed=" + seed;
            Path img = dir.resolve(c[0] + ".qcow2");
            if (c[0].startsWith("compressed")) {
                qemuImg.convert(src, "raw", img, "qcow2", true, c[1]);
            } else {
                qemuImg.create(img, "qcow2", size, c[1]);
                qemuIo.run(img, "qcow2", List.of(QemuIo.writeFrom(src, 0, size / 2),
                        QemuIo.writeZeroes(size / 2, 256 << 10, false), QemuIo.write(0x11, size - 70_000, 50_000)));
                if (c[0].equals("snapshot")) {
                    qemuImg.snapshotCreate(img, "s1");
                }
            }
            Path before = dir.resolve(c[0] + ".raw");
            qemuImg.convertToRaw(img, "qcow2", before);
            byte[] model = Files.readAllBytes(before);
            int cs = qemuImg.infoJson(img, "qcow2").get("cluster-size").asInt();
            try (BlockDevice d = Images.open(img, ImageFormat.QCOW2, false, null)) {
                new RandomWriter(d, model, cs, c[0].equals("v2") ? 2 : 3, 0, seed).run(800);
            }
            assertQemuAgrees(img, model, ctx);
        }
    }

    private void assertQemuAgrees(Path img, byte[] model, String ctx) throws IOException {
        QemuImg.CheckResult check = qemuImg.check(img, "qcow2");
        assertEquals(QemuImg.CHECK_CLEAN, check.exitCode(), ctx + ": qemu-img check: " + check.raw().stdout()
                + check.raw().stderr());
        Path expected = dir.resolve("expected.raw");
        Files.write(expected, model);
        assertTrue(qemuImg.compare(expected, "raw", img, "qcow2"), ctx + ": qemu-img compare differs");
    }
}
