package dev.shear.systest.fleece;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.tools.Json;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearCli;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.Tool;
import dev.shear.systest.tools.ToolResult;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Compressed push backups (design.md §Control API) checked by QEMU: a full push through the JSON API
 * and an incremental one over it through {@code shear ctl --compress}, each target clean per
 * {@code qemu-img check}, equal to a copy of the disk kept at its snapshot point per {@code qemu-img
 * compare}, with every allocated cluster compressed ({@code check}'s compressed-clusters; {@code map}
 * gives compressed data no offset) and all-zero clusters as zero clusters. The disk is not a multiple of
 * the cluster size, so the last, partial cluster goes the {@code qemu-img convert -c} way.
 */
@RequiresTools({"qemu-img", "qemu-io", "curl"})
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class CompressedPushInteropTest {
    private static final int KIB = 1024;
    private static final int MIB = 1024 * KIB;
    /** 64 clusters of 64 KiB and a partial one of 12 KiB. */
    private static final int SIZE = 4 * MIB + 12 * KIB;

    @TempDir
    Path dir;
    private Path image;
    private Path nbd;
    private Path ctl;
    private ShearProcess server;
    private ControlClient api;
    private final QemuImg qemuImg = new QemuImg();

    @BeforeEach
    void start() throws IOException {
        image = dir.resolve("disk.raw");
        Files.write(image, compressible(SIZE));
        nbd = dir.resolve("nbd.sock");
        ctl = dir.resolve("ctl.sock");
        server = ControlClient.serve(nbd, "vda", image, ctl);
        api = new ControlClient(ctl, server);
    }

    @AfterEach
    void stop() {
        if (server != null) {
            server.close();
        }
    }

    /** Text-like, well compressible bytes with an all-zero MiB at [1M, 2M). */
    private static byte[] compressible(int size) {
        byte[] b = new byte[size];
        StringBuilder s = new StringBuilder();
        for (int i = 0; s.length() < size; i++) {
            s.append("shear block ").append(i).append(" of a compressible disk\n");
        }
        System.arraycopy(s.toString().getBytes(StandardCharsets.US_ASCII), 0, b, 0, size);
        Arrays.fill(b, MIB, 2 * MIB, (byte) 0);
        return b;
    }

    private String uri() {
        return "nbd+unix:///vda?socket=" + nbd;
    }

    private void qemuIo(String command) {
        Tool.named("qemu-io").check("-f", "raw", "-c", command, uri());
    }

    /**
     * @param json   the compress field as JSON
     * @param option shear ctl's spelling of it
     * @param type   the compression type qemu-img info must report
     */
    @ParameterizedTest
    @CsvSource({"'\"zstd\"', --compress=zstd, zstd", "'\"deflate\"', --compress=deflate, zlib",
        "true, --compress, zlib"})
    void compressedFullThenIncrementalPushShouldMatchTheSnapshotsPerQemuImg(String json, String option,
            String type) throws IOException {
        Path full = dir.resolve("full.qcow2");
        JsonNode j1 = api.ok("POST", "/backups", "{\"export\":\"vda\",\"type\":\"push\",\"checkpoint\":\"c1\","
                + "\"target\":\"" + full + "\",\"compress\":" + json + "}");
        api.awaitState(j1.get("id").asText(), "completed");
        assertTarget(full, image, type, 3 * MIB + 12 * KIB);
        assertZeroAt(full, MIB, MIB);

        qemuIo("write -P 0x77 64k 64k");          // dirty: compressible
        qemuIo("write -z 2M 128k");                // dirty: zeros over data in the full backup
        qemuIo("write -P 0x31 4100k 8k");          // dirty: inside the partial last cluster
        Path expected = dir.resolve("expected.raw");
        Files.copy(image, expected);
        Path inc = dir.resolve("inc.qcow2");
        JsonNode j2 = ShearCli.json("ctl", "--control", ctl.toString(), "backup-begin", "--since", "c1",
                "--checkpoint", "c2", "--push", inc.toString(), "--backing", "full.qcow2", option, "vda");
        qemuIo("write -P 0x99 0 4M");              // after the snapshot point: not in the backup
        JsonNode done = api.awaitState(j2.get("id").asText(), "completed");
        assertEquals(64 * KIB + 128 * KIB + 12 * KIB, done.get("progress").get("totalBytes").asLong());
        assertTarget(inc, expected, type, 64 * KIB + 12 * KIB);
        assertZeroAt(inc, 2 * MIB, 128 * KIB);
    }

    /**
     * {@code target} is clean, equals {@code reference}, has {@code type} compression, and holds
     * {@code dataBytes} of its own data, every allocated cluster of it compressed.
     */
    private void assertTarget(Path target, Path reference, String type, long dataBytes) {
        QemuImg.CheckResult check = qemuImg.check(target, "qcow2");
        assertEquals(QemuImg.CHECK_CLEAN, check.exitCode(), check.raw().stdout() + check.raw().stderr());
        assertTrue(qemuImg.compare(reference, "raw", target, "qcow2"), target + " differs from " + reference);
        assertEquals(type, qemuImg.infoJson(target, "qcow2").get("format-specific").get("data")
                .get("compression-type").asText());
        long clusters = (dataBytes + 65535) / 65536;
        assertEquals(clusters, check.count("allocated-clusters"), check.json().toString());
        // Fails if anything was written uncompressed: a normal cluster is allocated but not compressed.
        assertEquals(clusters, check.count("compressed-clusters"), check.json().toString());
        for (JsonNode e : qemuImg.mapJson(target, "qcow2")) {
            if (e.get("depth").asInt() == 0 && e.get("data").asBoolean()) {
                assertFalse(e.has("offset"), "compressed data has no host offset: " + e);
            }
        }
    }

    /** [offset, offset + length) of {@code target} is a zero cluster run of its own (not compressed zeros). */
    private void assertZeroAt(Path target, long offset, long length) {
        for (JsonNode e : qemuImg.mapJson(target, "qcow2")) {
            long start = e.get("start").asLong();
            long end = start + e.get("length").asLong();
            if (start < offset + length && end > offset) {
                assertTrue(start <= offset && end >= offset + length, "one zero run over the range: " + e);
                assertTrue(e.get("zero").asBoolean() && !e.get("data").asBoolean(), e.toString());
                assertEquals(0, e.get("depth").asInt(), "a zero cluster of the target itself: " + e);
                return;
            }
        }
        throw new AssertionError("no map entry at " + offset + " of " + target);
    }

    @Test
    void badCompressValueShouldBeRefusedNamingTheField() throws IOException {
        String[] r = api.curl("POST", "/backups", "{\"export\":\"vda\",\"type\":\"push\",\"target\":\""
                + dir.resolve("t.qcow2") + "\",\"compress\":\"lz4\"}");
        assertEquals("400", r[0], r[1]);
        JsonNode body = Json.parse(r[1], "reply");
        assertEquals("compress", body.get("field").asText());
        assertTrue(body.get("error").asText().contains("lz4"), r[1]);
        assertFalse(Files.exists(dir.resolve("t.qcow2")));
        // The CLI takes a value only attached: a bare --compress leaves EXPORT an argument.
        ToolResult bad = ShearCli.run("ctl", "--control", ctl.toString(), "backup-begin", "--push",
                dir.resolve("t.qcow2").toString(), "--compress=lz4", "vda");
        assertEquals(1, bad.exitCode());
        assertTrue(bad.stderr().contains("\"field\":\"compress\""), bad.stderr());
    }
}
