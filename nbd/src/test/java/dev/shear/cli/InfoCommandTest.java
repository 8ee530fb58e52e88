package dev.shear.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** {@code shear info} against what qemu-img 7.2 printed for the same images. */
class InfoCommandTest {
    @TempDir
    Path dir;

    static Stream<QemuFixtures.Case> infoCases() {
        return QemuFixtures.cases("info").stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("infoCases")
    void outputShouldMatchQemuImg(QemuFixtures.Case c) throws IOException {
        QemuFixtures.copyImages(dir);
        QemuFixtures.check(c, dir);
    }

    @Test
    void actualSizeShouldBeTheAllocatedSizeNotTheLength() throws IOException {
        Path sparse = dir.resolve("sparse.raw");
        try (var ch = java.nio.channels.FileChannel.open(sparse, java.nio.file.StandardOpenOption.CREATE_NEW,
                java.nio.file.StandardOpenOption.WRITE)) {
            ch.write(java.nio.ByteBuffer.wrap(new byte[] {1}), (64 << 20) - 1);
        }
        long allocated = InfoCommand.allocatedSize(sparse);
        assertTrue(allocated >= 0 && allocated < 1 << 20, "allocated " + allocated);
        assertEquals(-1, InfoCommand.allocatedSize(dir.resolve("missing")));
    }

    @Test
    void missingImageShouldExitOneWithOneLine() {
        QemuFixtures.Result r = QemuFixtures.run("info", dir.resolve("nope.qcow2").toString());
        assertEquals(1, r.exit());
        assertEquals("shear: file: not found (image=" + dir.resolve("nope.qcow2") + ")\n", r.stderr());
        assertEquals("", r.stdout());
    }

    @Test
    void badOutputFormatShouldExitOne() throws IOException {
        QemuFixtures.copyImages(dir);
        QemuFixtures.Result r = QemuFixtures.run("info", "--output=xml", dir.resolve("plain.qcow2").toString());
        assertEquals(1, r.exit());
        assertTrue(r.stderr().startsWith("shear: IllegalArgumentException: --output: xml (expected: human or json)"),
                r.stderr());
    }

    @Test
    void explicitRawFormatShouldShowTheQcow2FileAsRaw() throws IOException {
        QemuFixtures.copyImages(dir);
        Path p = dir.resolve("plain.qcow2");
        QemuFixtures.Result r = QemuFixtures.run("info", "-f", "raw", "--output=json", p.toString());
        assertEquals(0, r.exit(), r.stderr());
        assertTrue(r.stdout().contains("\"format\": \"raw\""), r.stdout());
        assertTrue(r.stdout().contains("\"virtual-size\": " + Files.size(p)), r.stdout());
    }

    @Test
    void keyOrderShouldFollowQemusHashTable() {
        Map<String, Object> m = new LinkedHashMap<>();
        for (String k : List.of("filename", "format", "dirty-flag", "actual-size", "virtual-size", "cluster-size",
                "backing-filename", "full-backing-filename", "backing-filename-format", "snapshots",
                "format-specific")) {
            m.put(k, 1L);
        }
        assertEquals(List.of("backing-filename-format", "snapshots", "virtual-size", "filename", "cluster-size",
                "format", "actual-size", "format-specific", "full-backing-filename", "backing-filename",
                "dirty-flag"), QemuOutput.keyOrder(m));
    }

    @Test
    void sizesShouldPrintLikeSizeToStr() {
        assertEquals("0 B", QemuOutput.sizeToStr(0));
        assertEquals("999 B", QemuOutput.sizeToStr(999));
        assertEquals("0.977 KiB", QemuOutput.sizeToStr(1000));
        assertEquals("360 KiB", QemuOutput.sizeToStr(368640));
        assertEquals("1.5 MiB", QemuOutput.sizeToStr(3 << 19));
        assertEquals("1 TiB", QemuOutput.sizeToStr(1L << 40));
        assertFalse(QemuOutput.sizeToStr(1023 << 10).contains("1.02e"), "no exponent form below 1000");
    }

    @Test
    void jsonStringsShouldBeEscapedAsQemuDoes() {
        assertEquals("\"a\\\"b\\\\c\\u00E9\\u0001/\"", QemuOutput.json("a\"b\\c\u00e9\u0001/"));
        assertEquals("[\n]", QemuOutput.json(List.of()));
    }
}
