package dev.shear.systest.bitmap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.tools.NbdInfo;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import dev.shear.systest.tools.QemuNbd;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearCli;
import dev.shear.systest.tools.ToolResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code shear checkpoint} on an image that QEMU also writes: the bitmaps it creates are what
 * qemu-img and qemu-nbd see; a bitmap removed behind its back makes the checkpoint unusable, named;
 * redefine is all or nothing; a damaged sidecar is refused naming the line.
 */
@RequiresTools({"qemu-img", "qemu-io", "qemu-nbd", "nbdinfo"})
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class CheckpointCliTest {
    @TempDir
    Path dir;

    private static void ok(String... args) {
        ToolResult r = ShearCli.run(args);
        assertEquals(0, r.exitCode(), String.join(" ", args) + ": " + r);
    }

    @Test
    void checkpointChainShouldWorkWithQemuToolsAroundIt() throws Exception {
        QemuImg qemuImg = new QemuImg();
        Path img = dir.resolve("vda.qcow2");
        qemuImg.create(img, "qcow2", 64L << 20);
        ok("checkpoint", "create", "-d", "first full", img.toString(), "c1");
        new QemuIo().run(img, "qcow2", List.of(QemuIo.write(1, 0, 65536)));
        ok("checkpoint", "create", img.toString(), "c2");
        new QemuIo().run(img, "qcow2", List.of(QemuIo.write(2, 1 << 20, 4096)));

        JsonNode bitmaps = qemuImg.infoJson(img, "qcow2").path("format-specific").path("data").path("bitmaps");
        assertEquals("[{\"flags\":[\"auto\"],\"name\":\"c1\",\"granularity\":65536},"
                + "{\"flags\":[\"auto\"],\"name\":\"c2\",\"granularity\":65536}]", bitmaps.toString());
        try (QemuNbd q = QemuNbd.start(dir, img, "qcow2", "", List.of("--read-only", "--bitmap=c2"))) {
            List<String> m = new NbdInfo().map(q.uri(), "qemu:dirty-bitmap:c2");
            assertTrue(m.get(0).contains("clean") && m.get(1).contains("dirty"), m.toString());
        }

        JsonNode list = ShearCli.json("checkpoint", "list", "--output=json", img.toString());
        assertEquals(2, list.size());
        assertEquals("c1", list.get(1).get("parent").asText());
        assertEquals("first full", list.get(0).get("description").asText());
        assertTrue(list.get(0).get("usable").asBoolean() && list.get(1).get("usable").asBoolean());

        qemuImg.bitmapRemove(img, "c1");
        list = ShearCli.json("checkpoint", "list", "--output=json", img.toString());
        assertFalse(list.get(0).get("usable").asBoolean());
        assertTrue(list.get(0).get("problem").asText().startsWith("checkpoint 'c1': bitmap 'c1' is missing"),
                list.toString());
        ToolResult human = ShearCli.run("checkpoint", "list", img.toString());
        assertTrue(human.stdout().contains("c2") && human.stdout().contains("missing"), human.stdout());

        byte[] sidecar = Files.readAllBytes(dir.resolve("vda.qcow2.checkpoints"));
        ToolResult refused = ShearCli.run("checkpoint", "redefine", img.toString(), "c1", "c2");
        assertEquals(1, refused.exitCode());
        assertTrue(refused.stderr().contains("checkpoint 'c1': bitmap 'c1' is missing"), refused.stderr());
        assertEquals(new String(sidecar), Files.readString(dir.resolve("vda.qcow2.checkpoints")), "unchanged");
        ok("checkpoint", "redefine", "--created", "c2=2026-01-02T03:04:05Z", img.toString(), "c2");
        list = ShearCli.json("checkpoint", "list", "--output=json", img.toString());
        assertEquals(1, list.size());
        assertEquals("2026-01-02T03:04:05Z", list.get(0).get("created").asText());
        assertTrue(list.get(0).get("parent").isNull());

        ok("checkpoint", "delete", img.toString(), "c2");
        assertFalse(qemuImg.run("info", img.toString()).stdout().contains("c2"));
        assertFalse(Files.exists(dir.resolve("vda.qcow2.checkpoints")));
        assertEquals(QemuImg.CHECK_CLEAN, qemuImg.check(img, "qcow2").exitCode());

        Files.writeString(dir.resolve("vda.qcow2.checkpoints"), "shear-checkpoints 1\nc1\tc0\t2026-01-01T00:00:00Z\tc1"
                + "\t\n");
        ToolResult damaged = ShearCli.run("checkpoint", "list", img.toString());
        assertEquals(1, damaged.exitCode());
        assertTrue(damaged.stderr().contains("checkpoint 'c1': parent 'c0'")
                && damaged.stderr().contains("vda.qcow2.checkpoints"), damaged.stderr());
    }
}
