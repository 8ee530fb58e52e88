package dev.shear.systest.fleece;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.Tool;
import dev.shear.systest.tools.ToolResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Backups through the control API with real clients: qemu-io writes the live export, nbdcopy and
 * nbdinfo read the snapshot export, qemu-img checks and compares push targets, curl talks to the
 * control socket (design.md §Control API, §The fleecing invariant).
 */
@RequiresTools({"qemu-img", "qemu-io", "nbdcopy", "nbdinfo", "curl"})
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class BackupInteropTest {
    private static final int MIB = 1 << 20;
    private static final int SIZE = 8 * MIB;
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;
    private Path image;
    private Path nbd;
    private Path ctl;
    private ShearProcess server;
    private byte[] initial;

    @BeforeEach
    void start() throws IOException {
        image = dir.resolve("disk.raw");
        initial = new byte[SIZE];
        new SplittableRandom(Long.getLong("shear.seed", 11L)).nextBytes(initial);
        Files.write(image, initial);
        nbd = dir.resolve("nbd.sock");
        ctl = dir.resolve("ctl.sock");
        server = ControlClient.serve(nbd, "vda", image, ctl);
    }

    @AfterEach
    void stop() {
        if (server != null) {
            server.close();
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private String uri(String export) {
        return "nbd+unix:///" + export + "?socket=" + nbd;
    }

    /** {status, body}. */
    private String[] curl(String method, String path, String body) {
        return new ControlClient(ctl, server).curl(method, path, body);
    }

    private JsonNode ok(String method, String path, String body) {
        return new ControlClient(ctl, server).ok(method, path, body);
    }

    private void qemuIo(String command) {
        Tool.named("qemu-io").check("-f", "raw", "-c", command, uri("vda"));
    }

    private long scratchFiles() throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().startsWith("shear-")).count();
        }
    }

    @Test
    void pullBackupShouldServeTheSnapshotPointWhileTheLiveExportChanges() throws IOException {
        assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(ctl)));
        JsonNode job = ok("POST", "/backups", "{\"export\":\"vda\",\"checkpoint\":\"c1\",\"scratch\":\"qcow2\"}");
        String id = job.get("id").asText();
        assertEquals("vda-backup", job.get("snapshotExport").asText());
        assertEquals(1, scratchFiles());
        qemuIo("write -P 0x55 0 1M");
        qemuIo("write -z 2M 1M");
        qemuIo("discard 4M 1M");
        // After a write-zeroes / discard on the live export the snapshot still has data there.
        String map = Tool.named("nbdinfo").check("--map", uri("vda-backup")).stdout();
        assertFalse(map.contains("zero"), map);
        Path copy = dir.resolve("copy.raw");
        Tool.named("nbdcopy").check(uri("vda-backup"), copy.toString());
        assertArrayEquals(initial, Files.readAllBytes(copy));
        JsonNode status = ok("GET", "/jobs/" + id, null);
        assertEquals(SIZE, status.get("progress").get("doneBytes").asLong());
        // Busy export, unknown field, malformed JSON, unknown job.
        String[] busy = curl("POST", "/backups", "{\"export\":\"vda\"}");
        assertEquals("409", busy[0], busy[1]);
        String[] unknown = curl("POST", "/backups", "{\"export\":\"vda\",\"nope\":1}");
        assertEquals("400", unknown[0]);
        assertEquals("nope", JSON.readTree(unknown[1]).get("field").asText());
        assertEquals("400", curl("POST", "/backups", "{\"export\":")[0]);
        assertEquals("404", curl("DELETE", "/backups/backup-99", null)[0]);
        // Unaligned discard on the snapshot export is aligned inward: 64 KiB clusters, [100K, 300K) frees 2.
        Tool.named("qemu-io").check("-f", "raw", "-c", "discard 102400 204800", uri("vda-backup"));
        assertEquals(2, ok("GET", "/jobs/" + id, null).get("snapshot").get("releasedClusters").asLong());
        ok("DELETE", "/backups/" + id, null);
        assertEquals(0, scratchFiles());
        assertTrue(ok("GET", "/exports", null).toString().indexOf("vda-backup") < 0);
        assertEquals("c1", ok("GET", "/exports/vda/checkpoints", null).get(0).get("name").asText());
        String metrics = curl("GET", "/metrics", null)[1];
        assertTrue(metrics.contains("shear_cbw_copies_total{job=\"" + id + "\""), metrics);
        assertTrue(metrics.contains("shear_nbd_request_seconds_bucket"), metrics);
        // The hand-offs are measured for the requests qemu-io and nbdcopy sent through the pool.
        for (String h : new String[] {"request", "queue", "reply"}) {
            java.util.regex.Matcher m = java.util.regex.Pattern
                    .compile("(?m)^shear_nbd_" + h + "_seconds_count (\\d+)$").matcher(metrics);
            assertTrue(m.find() && Long.parseLong(m.group(1)) > 0, h + ": " + metrics);
        }
    }

    @Test
    void pushFullThenIncrementalShouldMatchTheSnapshotsPerQemuImg() throws IOException {
        Path full = dir.resolve("full.qcow2");
        JsonNode j1 = ok("POST", "/backups", "{\"export\":\"vda\",\"type\":\"push\",\"checkpoint\":\"c1\","
                + "\"target\":\"" + full + "\"}");
        awaitState(j1.get("id").asText(), "completed");
        Tool.named("qemu-img").check("check", full.toString());
        Tool.named("qemu-img").check("compare", "-f", "raw", "-F", "qcow2", image.toString(), full.toString());
        qemuIo("write -P 0x77 1M 64k");
        qemuIo("write -z 3M 128k");
        Path expected = dir.resolve("expected.raw");
        Files.copy(image, expected);
        Path inc = dir.resolve("inc.qcow2");
        JsonNode j2 = ok("POST", "/backups", "{\"export\":\"vda\",\"type\":\"push\",\"since\":\"c1\","
                + "\"checkpoint\":\"c2\",\"target\":\"" + inc + "\",\"backing\":\"full.qcow2\"}");
        qemuIo("write -P 0x99 0 4M");   // after the snapshot point: not in the backup
        JsonNode done = awaitState(j2.get("id").asText(), "completed");
        assertEquals(192 * 1024, done.get("progress").get("totalBytes").asLong());
        Tool.named("qemu-img").check("check", inc.toString());
        Tool.named("qemu-img").check("compare", "-f", "raw", "-F", "qcow2", expected.toString(), inc.toString());
        String[] compress = curl("POST", "/backups", "{\"export\":\"vda\",\"type\":\"push\",\"compress\":\"lz4\","
                + "\"target\":\"" + dir.resolve("c.qcow2") + "\"}");
        assertEquals("400", compress[0], compress[1]);
        assertEquals("compress", JSON.readTree(compress[1]).get("field").asText());
        assertEquals(0, scratchFiles());
    }

    @Test
    void sigtermMidBackupShouldDeleteTheScratch() throws IOException {
        ok("POST", "/backups", "{\"export\":\"vda\",\"scratch\":\"qcow2\"}");
        qemuIo("write -P 0x42 0 2M");
        assertEquals(1, scratchFiles());
        server.terminate();
        assertEquals(0, server.awaitExit(Duration.ofSeconds(30)), server.stderr());
        assertEquals(0, scratchFiles());
    }

    @Test
    void brokenSnapshotShouldFailReadsWithEio() throws IOException {
        // Room for one 64 KiB cluster: the second copy finds the scratch full and breaks the snapshot.
        JsonNode job = ok("POST", "/backups", "{\"export\":\"vda\",\"scratchCapacity\":65536,"
                + "\"scratch\":\"spill-none\"}");
        qemuIo("write -P 0x01 0 64k");
        qemuIo("write -P 0x02 1M 64k");
        ToolResult r = Tool.named("qemu-io").run("-r", "-f", "raw", "-c", "read 0 64k", uri("vda-backup"));
        assertTrue(r.stdout().contains("Input/output error") || r.stderr().contains("Input/output error"),
                r.stdout() + r.stderr());
        JsonNode status = ok("GET", "/jobs/" + job.get("id").asText(), null);
        assertFalse(status.get("snapshot").get("broken").isNull(), status.toString());
        // The guest was not hurt (break-snapshot): the live export has the new data.
        Tool.named("qemu-io").check("-r", "-f", "raw", "-c", "read -P 0x02 1M 64k", uri("vda"));
        JsonNode ended = ok("DELETE", "/backups/" + job.get("id").asText(), null);
        assertEquals("failed", ended.get("state").asText());
        assertEquals(0, scratchFiles());
    }

    private JsonNode awaitState(String id, String state) throws IOException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        JsonNode j;
        do {
            j = ok("GET", "/jobs/" + id, null);
            if (!j.get("state").asText().equals("running")) {
                break;
            }
            sleep(100);
        } while (System.nanoTime() < deadline);
        assertEquals(state, j.get("state").asText(), j.toString());
        return j;
    }
}
