package dev.shear.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** {@code shear map} against what qemu-img 7.2 printed for the same images. */
class MapCommandTest {
    @TempDir
    Path dir;

    static Stream<QemuFixtures.Case> mapCases() {
        return QemuFixtures.cases("map").stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("mapCases")
    void outputShouldMatchQemuImg(QemuFixtures.Case c) throws IOException {
        QemuFixtures.copyImages(dir);
        QemuFixtures.check(c, dir);
    }

    @Test
    void humanMapOfCompressedImageShouldFailWithQemusMessage() throws IOException {
        QemuFixtures.copyImages(dir);
        QemuFixtures.Result r = QemuFixtures.run("map", dir.resolve("zstd.qcow2").toString());
        assertEquals(1, r.exit());
        assertEquals("shear: File contains external, encrypted or compressed clusters.\n", r.stderr());
    }

    @Test
    void notAnImageFormatShouldExitOne() throws IOException {
        QemuFixtures.copyImages(dir);
        QemuFixtures.Result r = QemuFixtures.run("map", "-f", "vmdk", dir.resolve("plain.qcow2").toString());
        assertEquals(1, r.exit());
        assertTrue(r.stderr().contains("format: vmdk (expected: raw or qcow2)"), r.stderr());
    }

    @Test
    void hexColumnsShouldPrintZeroWithoutPrefix() {
        assertEquals("0               ", QemuOutput.hex16(0));
        assertEquals("0x1000          ", QemuOutput.hex16(4096));
    }
}
