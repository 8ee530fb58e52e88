package dev.shear.systest.fleece;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shear.block.ImageFile;
import dev.shear.qcow2.Qcow2Header;
import dev.shear.qcow2.bitmap.BitmapDirectory;
import dev.shear.qcow2.bitmap.BitmapDirectoryEntry;
import dev.shear.systest.tools.NbdInfo;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuNbd;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearCli;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.Tool;
import dev.shear.systest.tools.ToolResult;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The control API's checkpoints on a qcow2 export are the image's persistent ones (design.md
 * §Checkpoints and incremental backup): created over the real control socket, they are in the sidecar
 * and the image after a clean stop, {@code shear checkpoint list} and qemu-img see them, a restarted
 * server lists them and backs up exactly the writes after them; redefinition is all or nothing; a
 * flush stores the bits while the server keeps running (in_use clear until the next write); a crash makes them
 * unusable, named. Writes come from qemu-io over NBD, dirty maps from nbdinfo.
 */
@RequiresTools({"qemu-img", "qemu-io", "qemu-nbd", "nbdinfo", "curl"})
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class PersistentCheckpointInteropTest {
    private static final int KIB = 1024;
    private static final int MIB = 1 << 20;
    private static final long SIZE = 8L * MIB;
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;
    private Path image;
    private Path sidecar;
    private Path nbd;
    private Path ctl;
    private ShearProcess server;

    @BeforeEach
    void create() {
        image = dir.resolve("vda.qcow2");
        sidecar = dir.resolve("vda.qcow2.checkpoints");
        nbd = dir.resolve("nbd.sock");
        ctl = dir.resolve("ctl.sock");
        new QemuImg().create(image, "qcow2", SIZE);
    }

    @AfterEach
    void stop() {
        if (server != null) {
            server.close();
        }
    }

    /** Starts the server; the control socket exists once the ready line is printed. */
    private void serve() {
        server = ControlClient.serve(nbd, "vda", image, ctl);
    }

    /** SIGTERM: a clean stop stores the bitmaps with in_use cleared. */
    private void cleanStop() {
        server.terminate();
        assertEquals(0, server.awaitExit(Duration.ofSeconds(30)), server.stderr());
        server = null;
    }

    private String uri(String export) {
        return "nbd+unix:///" + export + "?socket=" + nbd;
    }

    /** {status, body} of one request through curl on the control socket. */
    private String[] curl(String method, String path, String body) {
        return new ControlClient(ctl, server).curl(method, path, body);
    }

    private JsonNode ok(String method, String path, String body) {
        return new ControlClient(ctl, server).ok(method, path, body);
    }

    /** {@code shear ctl --control SOCKET ARGS...}, exit 0 required; its JSON output. */
    private JsonNode ctl(String... args) throws IOException {
        ToolResult r = shearCtl(args);
        assertEquals(0, r.exitCode(), () -> String.join(" ", args) + ": " + r + "\n" + server.stderr());
        return JSON.readTree(r.stdout());
    }

    private ToolResult shearCtl(String... args) {
        List<String> all = new ArrayList<>(List.of("ctl", "--control", ctl.toString()));
        all.addAll(List.of(args));
        return ShearCli.run(all.toArray(new String[0]));
    }

    private void write(int pattern, long offset, long length) {
        Tool.named("qemu-io").check("-f", "raw", "-c", "write -P " + pattern + " " + offset + " " + length,
                uri("vda"));
    }

    /** The dirty ranges of {@code context} on {@code uri}, "offset+length", adjacent ones merged. */
    private static List<String> dirty(String uri, String context) {
        List<String> out = new ArrayList<>();
        long start = -1;
        long end = -1;
        for (JsonNode e : new NbdInfo().mapJson(uri, context)) {
            if ((e.get("type").asLong() & 1) == 0) {
                continue;
            }
            long off = e.get("offset").asLong();
            if (off != end) {
                if (start >= 0) {
                    out.add(start + "+" + (end - start));
                }
                start = off;
            }
            end = off + e.get("length").asLong();
        }
        if (start >= 0) {
            out.add(start + "+" + (end - start));
        }
        return out;
    }

    /** qemu-img info --force-share: bitmap name -> flags, e.g. c1=[in-use, auto]. */
    private List<String> qemuBitmaps(Path img) throws IOException {
        String out = Tool.named("qemu-img").check("info", "--force-share", "--output=json", "-f", "qcow2",
                img.toString()).stdout();
        List<String> names = new ArrayList<>();
        for (JsonNode b : JSON.readTree(out).path("format-specific").path("data").path("bitmaps")) {
            List<String> flags = new ArrayList<>();
            b.get("flags").forEach(f -> flags.add(f.asText()));
            names.add(b.get("name").asText() + "=" + flags);
        }
        return names;
    }

    private JsonNode awaitCompleted(String id) throws IOException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        JsonNode j;
        do {
            j = ok("GET", "/jobs/" + id, null);
            if (!j.get("state").asText().equals("running")) {
                break;
            }
            try {
                Thread.sleep(100);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        } while (System.nanoTime() < deadline);
        assertEquals("completed", j.get("state").asText(), j.toString());
        return j;
    }

    @Test
    void apiCheckpointsShouldPersistAcrossARestartAndBackUpExactlyTheWritesAfterThem() throws IOException {
        serve();
        ok("POST", "/exports/vda/checkpoints", "{\"name\":\"c1\",\"description\":\"by the api\"}");
        write(0x11, 0, 64 * KIB);
        Path full = dir.resolve("full.qcow2");
        JsonNode j1 = ok("POST", "/backups", "{\"export\":\"vda\",\"type\":\"push\",\"checkpoint\":\"c2\","
                + "\"target\":\"" + full + "\"}");
        awaitCompleted(j1.get("id").asText());
        write(0x22, MIB, 64 * KIB);
        cleanStop();

        // After the clean stop: in the sidecar, bitmaps stored in the image without in_use.
        String chain = Files.readString(sidecar, StandardCharsets.UTF_8);
        assertTrue(chain.contains("c1\t\t") && chain.contains("c2\tc1\t"), chain);
        assertEquals(List.of("c1=[auto]", "c2=[auto]"), qemuBitmaps(image));
        JsonNode offline = ShearCli.json("checkpoint", "list", "--output=json", image.toString());
        assertEquals(2, offline.size(), offline.toString());
        assertEquals("by the api", offline.get(0).get("description").asText());
        assertEquals("c1", offline.get(1).get("parent").asText());
        assertTrue(offline.get(0).get("usable").asBoolean() && offline.get(1).get("usable").asBoolean(),
                offline.toString());

        serve();
        JsonNode listed = ctl("checkpoints", "vda");
        assertEquals(2, listed.size(), listed.toString());
        for (JsonNode c : listed) {
            assertTrue(c.get("persistent").asBoolean() && c.get("usable").asBoolean(), listed.toString());
        }
        write(0x33, 3 * MIB, 64 * KIB);
        // Since c2: the write before the restart and the one after it, nothing else.
        JsonNode pull = ok("POST", "/backups", "{\"export\":\"vda\",\"since\":\"c2\"}");
        assertEquals(List.of(MIB + "+" + 64 * KIB, 3 * MIB + "+" + 64 * KIB),
                dirty(uri("vda-backup"), "qemu:dirty-bitmap:backup-vda"));
        ok("DELETE", "/backups/" + pull.get("id").asText(), null);
        // Since c1: also the write between c1 and c2.
        pull = ok("POST", "/backups", "{\"export\":\"vda\",\"since\":\"c1\"}");
        assertEquals(List.of("0+" + 64 * KIB, MIB + "+" + 64 * KIB, 3 * MIB + "+" + 64 * KIB),
                dirty(uri("vda-backup"), "qemu:dirty-bitmap:backup-vda"));
        ok("DELETE", "/backups/" + pull.get("id").asText(), null);
        // A push since c2 over the full backup is the live disk, per qemu-img.
        Path inc = dir.resolve("inc.qcow2");
        JsonNode j2 = ok("POST", "/backups", "{\"export\":\"vda\",\"type\":\"push\",\"since\":\"c2\","
                + "\"target\":\"" + inc + "\",\"backing\":\"full.qcow2\"}");
        assertEquals(128 * KIB, awaitCompleted(j2.get("id").asText()).get("progress").get("totalBytes").asLong());
        Tool.named("qemu-img").check("compare", "-f", "qcow2", "-F", "raw", inc.toString(), uri("vda"));

        // Delete removes the checkpoint from the sidecar and its bitmap from the image.
        ok("DELETE", "/exports/vda/checkpoints/c1", null);
        assertFalse(Files.readString(sidecar).contains("c1"), Files.readString(sidecar));
        assertEquals(List.of("c2=[auto]"), qemuBitmaps(image), "stored clean by the delete; no write since");
        cleanStop();
        assertEquals(List.of("c2=[auto]"), qemuBitmaps(image));
        assertEquals(1, ShearCli.json("checkpoint", "list", "--output=json", image.toString()).size());
    }

    @Test
    void redefineShouldBeAllOrNothingAndACrashShouldMakeCheckpointsUnusable() throws IOException {
        serve();
        ctl("checkpoint-add", "vda", "c1");
        ctl("checkpoint-add", "vda", "c2");
        ctl("bitmap-add", "vda", "b3");
        byte[] before = Files.readAllBytes(sidecar);

        ToolResult refused = shearCtl("checkpoint-redefine", "vda", "c1", "nope", "c2");
        assertEquals(1, refused.exitCode(), refused.toString());
        JsonNode error = JSON.readTree(refused.stderr());
        assertTrue(error.get("error").asText().contains("checkpoint 'nope': bitmap 'nope' is missing"),
                refused.stderr());
        assertArrayEquals(before, Files.readAllBytes(sidecar), "sidecar unchanged");
        assertEquals("409", curl("PUT", "/exports/vda/checkpoints", "{\"checkpoints\":[{\"name\":\"nope\"}]}")[0]);
        assertEquals("400", curl("PUT", "/exports/vda/checkpoints", "{\"checkpoints\":[{\"name\":\"c2\","
                + "\"parent\":\"c1\"}]}")[0]);
        assertArrayEquals(before, Files.readAllBytes(sidecar), "sidecar unchanged");

        JsonNode redefined = ctl("checkpoint-redefine", "--created", "b3=2026-01-02T03:04:05Z", "--description",
                "b3=adopted", "vda", "b3", "c2");
        assertEquals(2, redefined.size(), redefined.toString());
        assertTrue(redefined.get(0).get("parent").isNull(), redefined.toString());
        assertEquals("b3", redefined.get(1).get("parent").asText());
        String chain = Files.readString(sidecar);
        assertTrue(chain.contains("b3\t\t2026-01-02T03:04:05Z\tb3\tadopted\n") && chain.contains("c2\tb3\t"), chain);

        // A crash leaves the bitmaps in_use: after a restart the checkpoints are listed, unusable, named.
        write(0x44, 0, 64 * KIB);
        server.close();
        server = null;
        serve();
        JsonNode listed = ok("GET", "/exports/vda/checkpoints", null);
        assertEquals(2, listed.size(), listed.toString());
        assertFalse(listed.get(1).get("usable").asBoolean(), listed.toString());
        assertTrue(listed.get(1).get("problem").asText().contains("bitmap 'c2' is inconsistent (in_use"),
                listed.toString());
        String[] since = curl("POST", "/backups", "{\"export\":\"vda\",\"since\":\"c2\"}");
        assertEquals("409", since[0], since[1]);
        assertEquals("since", JSON.readTree(since[1]).get("field").asText());
        String[] redefine = curl("PUT", "/exports/vda/checkpoints", "{\"checkpoints\":[{\"name\":\"c2\"}]}");
        assertEquals("409", redefine[0], redefine[1]);
        assertTrue(redefine[1].contains("checkpoint 'c2': bitmap 'c2' is inconsistent"), redefine[1]);
        // The offline tool says the same once the server is gone.
        cleanStop();
        JsonNode offline = ShearCli.json("checkpoint", "list", "--output=json", image.toString());
        assertFalse(offline.get(1).get("usable").asBoolean(), offline.toString());
    }

    @Test
    void flushShouldStoreTheBitsWhileTheServerKeepsRunning() throws IOException {
        serve();
        ok("POST", "/exports/vda/checkpoints", "{\"name\":\"c1\"}");
        write(0x55, 2 * MIB, 64 * KIB);
        Path beforeFlush = dir.resolve("before.qcow2");
        Files.copy(image, beforeFlush);

        JsonNode flushed = ctl("bitmap-flush", "vda");
        assertEquals("[\"c1\"]", flushed.get("bitmaps").toString());
        assertEquals(List.of("c1=[auto]"), qemuBitmaps(image), "stored with in_use clear while served");
        Path afterFlush = dir.resolve("after.qcow2");
        Files.copy(image, afterFlush);
        write(0x66, 3 * MIB, 64 * KIB);
        assertEquals(List.of("c1=[in-use, auto]"), qemuBitmaps(image), "the next write sets in_use first");

        // The copy after the flush loads in qemu-nbd as it is (what a crash then would leave); the one
        // before it was in_use (a write followed the checkpoint), so its flag is cleared to read its bits.
        assertEquals(List.of(2 * MIB + "+" + 64 * KIB), dirtyAsStored(afterFlush));
        assertEquals(List.of(), storedDirty(beforeFlush));
        assertTrue(server.isAlive());
        String[] raw = curl("POST", "/exports/nope/bitmaps/flush", null);
        assertEquals("404", raw[0], raw[1]);
    }

    /** Clears in_use in the copy {@code img}, then asks qemu-nbd for bitmap c1's dirty ranges. */
    private List<String> storedDirty(Path img) throws IOException {
        clearInUse(img);
        return dirtyAsStored(img);
    }

    /** Asks qemu-nbd for bitmap c1's dirty ranges in {@code img} as it is on disk. */
    private List<String> dirtyAsStored(Path img) throws IOException {
        try (QemuNbd q = QemuNbd.start(dir, img, "qcow2", "", List.of("--read-only", "--bitmap=c1"))) {
            return dirty(q.uri(), "qemu:dirty-bitmap:c1");
        }
    }

    /** Clears the in_use flag (bit 0 of the flags at +12) of every bitmap directory entry, in place. */
    private static void clearInUse(Path img) throws IOException {
        try (ImageFile f = ImageFile.open(img, true)) {
            Qcow2Header h = Qcow2Header.read(f, img.toString());
            long position = h.bitmapsExtension().directoryOffset();
            for (BitmapDirectoryEntry e : BitmapDirectory.read(f, h, img.toString())) {
                ByteBuffer flags = ByteBuffer.allocate(4).putInt(e.flags() & ~BitmapDirectoryEntry.FLAG_IN_USE);
                f.write(position + 12, flags.flip());
                int nameBytes = e.name().getBytes(StandardCharsets.UTF_8).length;
                position += (24L + e.extraData().length + nameBytes + 7) & ~7L;
            }
            f.sync();
        }
    }
}
