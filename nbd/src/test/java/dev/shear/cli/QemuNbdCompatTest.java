package dev.shear.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/**
 * Regressions of {@code shear qemu-nbd} against the argument lists real callers pass to qemu-nbd:
 * {@code -e 0} (no client limit), ovirt-imageio's {@code json:{...}} image and its version probe.
 */
class QemuNbdCompatTest {

    @Test
    void sharedZeroShouldMeanNoClientLimit() {
        ServeCommand c = new ServeCommand(true);
        new CommandLine(c).parseArgs("-e", "0", "img");
        assertEquals(Integer.MAX_VALUE, c.clientLimit());
        ServeCommand d = new ServeCommand(true);
        new CommandLine(d).parseArgs("img");
        assertEquals(1, d.clientLimit());
        ServeCommand e = new ServeCommand(false);
        new CommandLine(e).parseArgs("--shared=8", "img");
        assertEquals(8, e.clientLimit());
    }

    @Test
    void ovirtImageioJsonFilenameShouldNameFormatAndFile() {
        ImageSpec s = ImageSpec.parseJson(
                "json:{\"driver\": \"qcow2\", \"file\": {\"driver\": \"file\", \"filename\": \"/v/disk.qcow2\"}}");
        assertEquals("qcow2", s.format());
        assertEquals(Path.of("/v/disk.qcow2"), s.path());
        ImageSpec flat = ImageSpec.parseJson("json:{\"file.filename\": \"/v/disk.raw\"}");
        assertNull(flat.format());
        assertEquals(Path.of("/v/disk.raw"), flat.path());
    }

    @Test
    void jsonFilenameWithUnsupportedKeyShouldBeRefusedByName() {
        String backingNull = "json:{\"driver\": \"qcow2\", \"backing\": null, "
                + "\"file\": {\"driver\": \"file\", \"filename\": \"/x\"}}";
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ImageSpec.parseJson(backingNull));
        assertTrue(e.getMessage().contains("backing"), e.getMessage());
        IllegalArgumentException n = assertThrows(IllegalArgumentException.class,
                () -> ImageSpec.parseJson("json:{\"driver\": \"raw\", \"file\": {\"driver\": \"nbd\"}}"));
        assertTrue(n.getMessage().contains("file.driver: nbd"), n.getMessage());
    }

    @Test
    void qemuNbdVersionShouldParseAsQemuNbd() {
        CommandLine cl = ShearMain.newCommandLine();
        StringWriter out = new StringWriter();
        cl.setOut(new PrintWriter(out));
        assertEquals(0, cl.execute("qemu-nbd", "--version"));
        // ovirt-imageio: out.splitlines()[0].split(None, 2)[1] -> tuple of ints
        String[] words = out.toString().lines().findFirst().orElseThrow().split("\\s+", 3);
        assertEquals("qemu-nbd", words[0]);
        assertTrue(words[1].matches("\\d+\\.\\d+\\.\\d+"), out.toString());
    }
}
