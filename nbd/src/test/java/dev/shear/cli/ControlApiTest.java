package dev.shear.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shear.block.RawImage;
import dev.shear.fleece.job.ManagedDisk;
import dev.shear.nbd.control.BackupService;
import dev.shear.nbd.control.ControlServer;
import dev.shear.nbd.server.DirtyBitmapSource;
import dev.shear.nbd.server.Export;
import dev.shear.nbd.server.ExportRegistry;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The control API over its real Unix socket, driven by {@code shear ctl}'s HTTP client. */
class ControlApiTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;
    private ControlServer server;
    private ExportRegistry registry;
    private Path ctl;

    @BeforeEach
    void start() throws IOException {
        Path raw = dir.resolve("d.raw");
        Files.write(raw, new byte[4 << 20]);
        Map<String, ManagedDisk> managed = new LinkedHashMap<>();
        Export e = BackupService.manage(new Export("vda", null, RawImage.open(raw, true), false, false,
                DirtyBitmapSource.NONE, true), List.of(), managed);
        registry = new ExportRegistry(List.of(e));
        BackupService service = new BackupService(registry, dir, null);
        service.addDisks(managed);
        ctl = dir.resolve("ctl.sock");
        server = new ControlServer(ctl, service).start();
    }

    @AfterEach
    void stop() throws IOException {
        server.service().endAll();
        server.close();
        registry.flushAndClose();
    }

    private CtlCommand.Reply call(String method, String path, String body) throws IOException {
        return CtlCommand.send(ctl, method, path, body);
    }

    private JsonNode ok(String method, String path, String body) throws IOException {
        CtlCommand.Reply r = call(method, path, body);
        assertTrue(r.ok(), () -> method + " " + path + " -> " + r.status() + " " + r.body());
        return JSON.readTree(r.body());
    }

    private void expect(int status, String field, String method, String path, String body) throws IOException {
        CtlCommand.Reply r = call(method, path, body);
        assertEquals(status, r.status(), r.body());
        JsonNode n = JSON.readTree(r.body());
        assertTrue(n.hasNonNull("error"), r.body());
        if (field != null) {
            assertEquals(field, n.get("field").asText(), r.body());
        }
    }

    @Test
    void bitmapsAndCheckpointsShouldBeManagedThroughTheApi() throws IOException {
        assertEquals("vda", ok("GET", "/exports", null).get(0).get("name").asText());
        ok("POST", "/exports/vda/bitmaps", "{\"name\":\"b1\",\"granularity\":65536}");
        ok("POST", "/exports/vda/bitmaps", "{\"name\":\"b2\"}");
        ok("POST", "/exports/vda/bitmaps/b2/disable", "{}");
        ok("POST", "/exports/vda/bitmaps/b2/merge", "{\"sources\":[\"b1\"]}");
        ok("POST", "/exports/vda/bitmaps/b1/clear", "{}");
        JsonNode list = ok("GET", "/exports/vda/bitmaps", null);
        assertEquals(2, list.size());
        assertEquals(false, list.get(1).get("enabled").asBoolean());
        ok("DELETE", "/exports/vda/bitmaps/b2", null);
        ok("POST", "/exports/vda/checkpoints", "{\"name\":\"c1\",\"description\":\"first\"}");
        expect(409, "name", "POST", "/exports/vda/checkpoints", "{\"name\":\"c1\"}");
        expect(409, "name", "DELETE", "/exports/vda/bitmaps/c1", null);
        assertEquals("c1", ok("GET", "/exports/vda/checkpoints", null).get(0).get("name").asText());
        ok("DELETE", "/exports/vda/checkpoints/c1", null);
        expect(404, null, "DELETE", "/exports/vda/checkpoints/c1", null);
        expect(404, null, "GET", "/exports/nope/bitmaps", null);
        expect(404, null, "GET", "/nowhere", null);
        expect(405, null, "PUT", "/exports", "{}");
        assertTrue(call("GET", "/metrics", null).body().contains("shear_control_requests_total"));
    }

    @Test
    void backupsShouldRefuseBadInputBusyExportsAndUnknownJobs() throws IOException {
        expect(400, null, "POST", "/backups", "{\"export\":");
        expect(400, "bogus", "POST", "/backups", "{\"export\":\"vda\",\"bogus\":true}");
        expect(400, "export", "POST", "/backups", "{}");
        expect(400, "type", "POST", "/backups", "{\"export\":\"vda\",\"type\":\"sideways\"}");
        expect(400, "since", "POST", "/backups", "{\"export\":\"vda\",\"since\":\"nope\"}");
        String push = "{\"export\":\"vda\",\"type\":\"push\",\"target\":\"" + dir.resolve("t.qcow2") + "\",";
        expect(400, "compress", "POST", "/backups", push + "\"compress\":\"lz4\"}");
        expect(400, "compress", "POST", "/backups", push + "\"compress\":1}");
        expect(400, "compress", "POST", "/backups", push + "\"compress\":{}}");
        expect(400, "compress", "POST", "/backups", "{\"export\":\"vda\",\"compress\":\"zstd\"}");
        assertTrue(call("POST", "/backups", push + "\"compress\":\"lz4\"}").body().contains("lz4"));
        assertFalse(Files.exists(dir.resolve("t.qcow2")));
        expect(404, null, "POST", "/backups", "{\"export\":\"nope\"}");
        JsonNode job = ok("POST", "/backups", "{\"export\":\"vda\",\"checkpoint\":\"c1\"}");
        assertEquals("vda-backup", job.get("snapshotExport").asText());
        assertTrue(registry.find("vda-backup") != null);
        expect(409, "export", "POST", "/backups", "{\"export\":\"vda\"}");
        expect(409, "name", "DELETE", "/exports/vda", null);
        String id = job.get("id").asText();
        assertEquals("running", ok("GET", "/jobs/" + id, null).get("state").asText());
        assertEquals("ended", ok("DELETE", "/backups/" + id, null).get("state").asText());
        assertEquals(null, registry.find("vda-backup"));
        expect(404, null, "DELETE", "/backups/backup-42", null);
        expect(404, null, "GET", "/jobs/backup-42", null);
        // A second backup since the checkpoint the first created.
        JsonNode inc = ok("POST", "/backups", "{\"export\":\"vda\",\"since\":\"c1\"}");
        assertEquals("backup-vda", inc.get("bitmap").asText());
        ok("DELETE", "/backups/" + inc.get("id").asText(), null);
    }
}
