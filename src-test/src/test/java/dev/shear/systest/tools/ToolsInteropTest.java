package dev.shear.systest.tools;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The client wrappers against qemu-nbd, so that interop tests can trust them; and the in-process CLI. */
@RequiresTools({"qemu-img", "qemu-io", "qemu-nbd", "nbdinfo", "nbdcopy", ToolRequirement.PYTHON_LIBNBD})
class ToolsInteropTest {

    @Test
    void clientsShouldSeeWhatQemuNbdServes(@TempDir Path dir) throws Exception {
        Path img = dir.resolve("a.qcow2");
        new QemuImg().create(img, "qcow2", 1 << 20);
        new QemuIo().run(img, "qcow2", List.of(QemuIo.write(0x42, 4096, 512)));
        QemuNbd server = QemuNbd.start(dir, img, "qcow2", "exp", List.of("--read-only"));
        try (server) {
            NbdInfo nbdinfo = new NbdInfo();
            assertEquals(1 << 20, nbdinfo.size(server.uri()));
            JsonNode json = nbdinfo.json(server.uri());
            assertEquals("exp", json.get("exports").get(0).get("export-name").asText(), json.toString());
            assertFalse(nbdinfo.map(server.uri()).isEmpty());

            Path copy = dir.resolve("copy.raw");
            new NbdCopy().copy(server.uri(), copy.toString());
            byte[] bytes = Files.readAllBytes(copy);
            assertEquals(1 << 20, bytes.length);
            assertEquals(0x42, bytes[4096]);
            assertEquals(0, bytes[4095]);

            String out = new Nbdsh().run(server.uri(), "print(h.pread(4, 4096).hex())");
            assertEquals("42424242", out.strip());
        }
        assertFalse(server.isAlive(), "qemu-nbd must be gone after close");
    }

    @Test
    void qemuNbdThatCannotStartShouldFailWithItsStderr(@TempDir Path dir) {
        ToolException e = org.junit.jupiter.api.Assertions.assertThrows(ToolException.class,
                () -> QemuNbd.start(dir, dir.resolve("missing.qcow2"), "qcow2", "x", List.of()).close());
        assertTrue(e.getMessage().contains("missing.qcow2"), e.getMessage());
    }

    @Test
    void shearCliShouldRunInProcess() {
        ToolResult r = ShearCli.run("--version");
        assertEquals(0, r.exitCode(), r.toString());
        assertTrue(r.stdout().startsWith("shear "), r.stdout());
        ToolResult bad = ShearCli.run("--no-such-option");
        assertEquals(2, bad.exitCode());
        assertTrue(bad.stderr().contains("shear:"), bad.stderr());
    }
}
