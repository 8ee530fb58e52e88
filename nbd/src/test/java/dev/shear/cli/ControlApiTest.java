package dev.shear.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shear.bitmap.checkpoint.CheckpointStore;
import dev.shear.block.ImageFormat;
import dev.shear.block.RawImage;
import dev.shear.fleece.job.ManagedDisk;
import dev.shear.nbd.control.BackupService;
import dev.shear.nbd.control.ControlServer;
import dev.shear.nbd.server.DirtyBitmapSource;
import dev.shear.nbd.server.Export;
import dev.shear.nbd.server.ExportRegistry;
import dev.shear.nbd.server.TrackedExports;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2CreateOptions;
import dev.shear.qcow2.Qcow2Creator;
import java.nio.ByteBuffer;
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

/**
 * The control API over its real Unix socket, driven by {@code shear ctl}'s HTTP client: a raw export
 * {@code vda} (in-memory checkpoints) and a qcow2 export {@code q} served as {@code shear serve} does
 * (tracked: persistent bitmaps and checkpoints).
 */
class ControlApiTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int QCOW2_SIZE = 4 << 20;

    @TempDir
    Path dir;
    private ControlServer server;
    private ExportRegistry registry;
    private Path ctl;
    private Path qcow2;

    @BeforeEach
    void start() throws IOException {
        Path raw = dir.resolve("d.raw");
        Files.write(raw, new byte[4 << 20]);
        qcow2 = dir.resolve("q.qcow2");
        Qcow2Creator.create(qcow2, Qcow2CreateOptions.defaults(QCOW2_SIZE));
        serve();
    }

    /** (Re)starts the exports and the control server over the same files. */
    private void serve() throws IOException {
        Map<String, ManagedDisk> managed = new LinkedHashMap<>();
        Export e = BackupService.manage(new Export("vda", null, RawImage.open(dir.resolve("d.raw"), true), false,
                false, DirtyBitmapSource.NONE, true), List.of(), managed);
        Export q = BackupService.manage(new Export("q", null, TrackedExports.stack(Images.open(qcow2,
                ImageFormat.QCOW2, false, null), false), false, false, DirtyBitmapSource.NONE, true), List.of(),
                managed);
        registry = new ExportRegistry(List.of(e, q));
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

    /** A clean stop (bitmaps stored, in_use cleared) and a new server over the same images. */
    private void restart() throws IOException {
        stop();
        serve();
    }

    private void write(String export, long offset, int length, int pattern) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(length);
        while (b.hasRemaining()) {
            b.put((byte) pattern);
        }
        registry.find(export).device().write(offset, b.flip(), 0);
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
    void rawExportsShouldSayTheirCheckpointsAreNotPersistentAndRefuseFlushAndRedefine() throws IOException {
        ok("POST", "/exports/vda/checkpoints", "{\"name\":\"c1\"}");
        JsonNode c = ok("GET", "/exports/vda/checkpoints", null).get(0);
        assertFalse(c.get("persistent").asBoolean(), c.toString());
        assertTrue(c.get("usable").asBoolean(), c.toString());
        assertFalse(ok("GET", "/exports/vda", null).get("persistent").asBoolean());
        expect(409, "export", "POST", "/exports/vda/bitmaps/flush", null);
        expect(409, "export", "PUT", "/exports/vda/checkpoints", "{\"checkpoints\":[{\"name\":\"c1\"}]}");
        expect(404, null, "POST", "/exports/nope/bitmaps/flush", null);
    }

    @Test
    void qcow2CheckpointsShouldBeTheImagesPersistentChainAcrossARestart() throws IOException {
        assertTrue(ok("GET", "/exports/q", null).get("persistent").asBoolean());
        ok("POST", "/exports/q/checkpoints", "{\"name\":\"c1\",\"description\":\"first\"}");
        write("q", 0, 65536, 0x11);
        ok("POST", "/exports/q/checkpoints", "{\"name\":\"c2\"}");
        write("q", 1 << 20, 4096, 0x22);
        // In the sidecar at once, parent chained.
        assertEquals("c1", CheckpointStore.read(qcow2).find("c2").parent());
        JsonNode bitmaps = ok("GET", "/exports/q/bitmaps", null);
        assertEquals(2, bitmaps.size(), bitmaps.toString());
        assertTrue(bitmaps.get(0).get("persistent").asBoolean(), bitmaps.toString());
        expect(409, "name", "DELETE", "/exports/q/bitmaps/c1", null);

        restart();
        JsonNode list = ok("GET", "/exports/q/checkpoints", null);
        assertEquals(2, list.size(), list.toString());
        assertEquals("first", list.get(0).get("description").asText());
        assertTrue(list.get(1).get("persistent").asBoolean() && list.get(1).get("usable").asBoolean(),
                list.toString());
        // c2 recorded exactly the 4 KiB write after it, at the default granularity (64 KiB clusters).
        JsonNode c2 = named(ok("GET", "/exports/q/bitmaps", null), "c2");
        assertEquals(65536, c2.get("dirtyBytes").asLong(), c2.toString());
        JsonNode c1 = named(ok("GET", "/exports/q/bitmaps", null), "c1");
        assertEquals(2 * 65536, c1.get("dirtyBytes").asLong(), c1.toString());
        JsonNode job = ok("POST", "/backups", "{\"export\":\"q\",\"since\":\"c2\",\"checkpoint\":\"c3\"}");
        assertEquals("backup-q", job.get("bitmap").asText());
        ok("DELETE", "/backups/" + job.get("id").asText(), null);
        assertEquals("c2", CheckpointStore.read(qcow2).find("c3").parent());

        ok("DELETE", "/exports/q/checkpoints/c1", null);
        assertEquals(null, CheckpointStore.read(qcow2).find("c1"));
        assertEquals(null, named(ok("GET", "/exports/q/bitmaps", null), "c1"));
        assertEquals(null, CheckpointStore.read(qcow2).find("c2").parent());
    }

    @Test
    void redefineShouldReplaceTheChainOrChangeNothing() throws IOException {
        ok("POST", "/exports/q/checkpoints", "{\"name\":\"c1\"}");
        ok("POST", "/exports/q/checkpoints", "{\"name\":\"c2\"}");
        ok("POST", "/exports/q/bitmaps", "{\"name\":\"b3\"}");
        byte[] before = Files.readAllBytes(CheckpointStore.sidecar(qcow2));
        CtlCommand.Reply refused = call("PUT", "/exports/q/checkpoints",
                "{\"checkpoints\":[{\"name\":\"c1\"},{\"name\":\"gone\"},{\"name\":\"c2\"}]}");
        assertEquals(409, refused.status(), refused.body());
        assertTrue(JSON.readTree(refused.body()).get("error").asText().contains("checkpoint 'gone': bitmap 'gone' "
                + "is missing"), refused.body());
        assertEquals(new String(before), Files.readString(CheckpointStore.sidecar(qcow2)), "unchanged");
        expect(400, "checkpoints", "PUT", "/exports/q/checkpoints", "{\"checkpoints\":[{\"name\":\"c1\","
                + "\"created\":\"yesterday\"}]}");
        expect(400, "checkpoints", "PUT", "/exports/q/checkpoints", "{\"checkpoints\":[{\"name\":\"c1\","
                + "\"parent\":\"c2\"},{\"name\":\"c2\"}]}");
        expect(400, "checkpoints", "PUT", "/exports/q/checkpoints", "{\"checkpoints\":[{\"parent\":\"c1\"}]}");
        expect(400, "checkpoints", "PUT", "/exports/q/checkpoints", "{}");
        expect(400, "bogus", "PUT", "/exports/q/checkpoints", "{\"checkpoints\":[],\"bogus\":1}");
        assertEquals(new String(before), Files.readString(CheckpointStore.sidecar(qcow2)), "unchanged");

        JsonNode now = ok("PUT", "/exports/q/checkpoints", "{\"checkpoints\":[{\"name\":\"b3\","
                + "\"created\":\"2026-01-02T03:04:05Z\",\"description\":\"adopted\"},{\"name\":\"c2\"}]}");
        assertEquals(2, now.size(), now.toString());
        assertEquals("b3", now.get(1).get("parent").asText());
        assertEquals("2026-01-02T03:04:05Z", now.get(0).get("created").asText());
        assertEquals("adopted", CheckpointStore.read(qcow2).find("b3").description());
        // Bitmaps are not touched: c1's stays, now a plain bitmap that may be removed.
        ok("DELETE", "/exports/q/bitmaps/c1", null);
        ok("PUT", "/exports/q/checkpoints", "{\"checkpoints\":[]}");
        assertFalse(Files.exists(CheckpointStore.sidecar(qcow2)));
    }

    @Test
    void flushShouldStoreTheBitmapsNow() throws IOException {
        ok("POST", "/exports/q/checkpoints", "{\"name\":\"c1\"}");
        write("q", 2 << 20, 512, 0x33);
        assertEquals(List.of(), StoredBitmaps.dirtyOffsets(qcow2, "c1"), "stored clean at creation");
        JsonNode r = ok("POST", "/exports/q/bitmaps/flush", null);
        assertEquals("[\"c1\"]", r.get("bitmaps").toString());
        assertEquals(List.of(2L << 20), StoredBitmaps.dirtyOffsets(qcow2, "c1"));
        // Stored exact, in_use clear, while the export stays open; the next write sets in_use first.
        assertFalse(StoredBitmaps.entry(qcow2, "c1").inUse());
        write("q", 3 << 20, 512, 0x44);
        assertTrue(StoredBitmaps.entry(qcow2, "c1").inUse());
        ok("POST", "/exports/q/bitmaps/flush", null);
        assertEquals(List.of(2L << 20, 3L << 20), StoredBitmaps.dirtyOffsets(qcow2, "c1"));
    }

    @Test
    void requestsShouldBeAnswered503OnceShutdownBegins() throws IOException {
        ok("GET", "/exports", null);
        server.beginShutdown();
        CtlCommand.Reply r = call("GET", "/exports", null);
        assertEquals(503, r.status(), r.body());
        assertTrue(JSON.readTree(r.body()).get("error").asText().contains("shutting down"), r.body());
        assertEquals(503, call("POST", "/backups", "{\"export\":\"vda\"}").status());
        assertTrue(server.service().listJobs().isEmpty(), "nothing ran");
    }

    private static JsonNode named(JsonNode list, String name) {
        for (JsonNode b : list) {
            if (b.get("name").asText().equals(name)) {
                return b;
            }
        }
        return null;
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
