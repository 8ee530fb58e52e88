package dev.shear.systest.nbd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.images.ImageMatrix;
import dev.shear.systest.tools.Json;
import dev.shear.systest.tools.NbdCopy;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import dev.shear.systest.tools.QemuNbd;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.Tool;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Shear driven by the QEMU and libnbd clients that real backup tools run: {@code nbdcopy} (one and
 * four connections, and copying into a writable raw export), {@code qemu-img} (info, map, compare,
 * convert from and to an export) and {@code qemu-io} (reads with patterns; writes, zeroes and flush on a
 * raw export, checked in the file afterwards).
 */
@RequiresTools({"qemu-img", "qemu-io", "qemu-nbd", "nbdcopy"})
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class NbdInteropTest {
    static final long MIB = 1 << 20;
    static final long SIZE = 16 * MIB;

    @TempDir
    Path dir;

    private final QemuImg qemuImg = new QemuImg();
    private final QemuIo qemuIo = new QemuIo();
    private final List<AutoCloseable> servers = new ArrayList<>();
    private Path image;
    private Path reference;

    /** A 16 MiB qcow2 with patterned, random, zeroed and unallocated ranges, and its raw reference. */
    @BeforeEach
    void makeImage() {
        Path random = dir.resolve("random.bin");
        ImageMatrix.writeRandomFile(random, 2 * MIB, 42);
        image = dir.resolve("disk.qcow2");
        qemuImg.create(image, "qcow2", SIZE);
        qemuIo.run(image, "qcow2", List.of(
                QemuIo.write(0x11, 0, 64 * 1024),
                QemuIo.writeFrom(random, MIB + 3, 2 * MIB - 3),
                QemuIo.writeZeroes(4 * MIB, MIB, false),
                QemuIo.write(0x22, 8 * MIB + 512, 100_000),
                QemuIo.write(0x33, SIZE - 4096, 4096)));
        reference = dir.resolve("disk.ref.raw");
        qemuImg.convertToRaw(image, "qcow2", reference);
    }

    @AfterEach
    void stopServers() throws Exception {
        for (AutoCloseable s : servers) {
            s.close();
        }
    }

    private ShearProcess serve(String name, Path img, String... args) {
        ShearProcess s = ShearProcess.serve(dir.resolve(name + ".sock"), name, img, args);
        servers.add(s);
        return s;
    }

    private Path emptyRaw(String name) {
        Path p = dir.resolve(name);
        qemuImg.create(p, "raw", SIZE);
        return p;
    }

    @Test
    void nbdcopyFullReadShouldGiveTheImageBytes() throws IOException {
        ShearProcess s = serve("disk", image, "-r");
        Path out = dir.resolve("out.raw");
        new NbdCopy().copy(s.uri(), out.toString());
        assertArrayEquals(Files.readAllBytes(reference), Files.readAllBytes(out));
    }

    @Test
    void nbdcopyWithFourConnectionsShouldUseMultiConnAndGiveTheImageBytes() throws IOException {
        // nbdcopy caps connections at --threads (default: the number of cores).
        ShearProcess s = serve("disk", image, "-r");
        Path out = dir.resolve("out.raw");
        new NbdCopy().copy(s.uri(), out.toString(), "--connections=4", "--threads=4",
                "--requests=16");
        assertArrayEquals(Files.readAllBytes(reference), Files.readAllBytes(out));
        long connects = s.stderr().lines().filter(l -> l.contains("event=connect ")).count();
        assertTrue(connects >= 4, "nbdcopy --connections=4 opened " + connects + " connections\n" + s.stderr());
    }

    @Test
    void nbdcopyIntoWritableRawExportShouldWriteEveryByte() throws IOException {
        Path target = emptyRaw("target.raw");
        ShearProcess s = serve("target", target, "-f", "raw");
        new NbdCopy().copy(reference.toString(), s.uri(), "--connections=2");
        assertArrayEquals(Files.readAllBytes(reference), Files.readAllBytes(target));
    }

    @Test
    void qemuImgInfoMapCompareShouldSeeTheExportAsQemuNbdDoes() {
        ShearProcess s = serve("disk", image, "-r");
        QemuNbd q = QemuNbd.start(dir, image, "qcow2", "disk", List.of("--read-only"));
        servers.add(q);
        Tool t = qemuImg.tool();
        JsonNode info = Json.parse(t.check("info", "--output=json", s.uri()).stdout(), "qemu-img info");
        assertEquals(SIZE, info.get("virtual-size").asLong(), info.toString());
        assertEquals("raw", info.get("format").asText(), info.toString());

        List<String> sm = mapRanges(Json.parse(t.check("map", "--output=json", s.uri()).stdout(), "map shear"));
        List<String> qm = mapRanges(Json.parse(t.check("map", "--output=json", q.uri()).stdout(), "map qemu"));
        assertEquals(qm, sm, "qemu-img map --output=json of the export (offsets ignored)");

        assertEquals(0, t.run("compare", "-f", "raw", "-F", "qcow2", s.uri(), image.toString()).exitCode(),
                "qemu-img compare export vs image");
        Path other = dir.resolve("other.raw");
        qemuImg.convertToRaw(image, "qcow2", other);
        qemuIo.run(other, "raw", List.of(QemuIo.write(0x99, 5 * MIB, 1)));
        assertEquals(1, t.run("compare", "-f", "raw", "-F", "raw", s.uri(), other.toString()).exitCode(),
                "qemu-img compare must see a one-byte difference");
    }

    @Test
    void qemuImgConvertFromAndToExportsShouldRoundTrip() throws IOException {
        ShearProcess src = serve("disk", image, "-r");
        Path out = dir.resolve("out.qcow2");
        qemuImg.tool().check("convert", "-f", "raw", "-O", "qcow2", src.uri(), out.toString());
        assertTrue(qemuImg.compare(out, "qcow2", image, "qcow2"), "convert from the export");

        Path target = emptyRaw("target.raw");
        ShearProcess dst = serve("target", target, "-f", "raw");
        qemuImg.tool().check("convert", "-n", "-f", "qcow2", "-O", "raw", image.toString(), dst.uri());
        assertArrayEquals(Files.readAllBytes(reference), Files.readAllBytes(target), "convert into the export");
    }

    @Test
    void qemuIoReadsShouldSeePatternsAndWritesShouldReachTheFile() throws IOException {
        ShearProcess ro = serve("disk", image, "-r");
        Tool io = Tool.named("qemu-io");
        io.check("-r", "-f", "raw", "-c", "read -q -P 0x11 0 64k", "-c", "read -q -P 0x22 8389120 100000",
                "-c", "read -q -P 0 4M 1M", "-c", "read -q -P 0x33 16773120 4096", ro.uri());
        assertTrue(io.run("-r", "-f", "raw", "-c", "read -P 0x44 0 512", ro.uri()).stdout().contains("Pattern"),
                "a wrong pattern must be reported");
        assertTrue(io.run("-f", "raw", "-c", "write -P 0x55 0 512", ro.uri()).exitCode() != 0
                || !io.run("-f", "raw", "-c", "write -P 0x55 0 512", ro.uri()).stderr().isEmpty(),
                "writes to a read-only export must fail");

        Path target = emptyRaw("target.raw");
        ShearProcess rw = serve("target", target, "-f", "raw");
        io.check("-f", "raw", "-c", "write -q -P 0xab 1M 64k", "-c", "write -q -P 0xcd 3000 5000",
                "-c", "write -q -z 1M 4k", "-c", "write -q -f -P 0xef 2M 512", "-c", "flush",
                "-c", "read -q -P 0xab 1052672 61440", rw.uri());
        byte[] f = Files.readAllBytes(target);
        assertRange(f, 1 << 20, 4096, 0);
        assertRange(f, (1 << 20) + 4096, 61440, 0xab);
        assertRange(f, 3000, 5000, 0xcd);
        assertRange(f, 2 << 20, 512, 0xef);
        assertRange(f, 0, 3000, 0);
    }

    private static void assertRange(byte[] f, int off, int len, int value) {
        byte[] expected = new byte[len];
        Arrays.fill(expected, (byte) value);
        assertArrayEquals(expected, Arrays.copyOfRange(f, off, off + len),
                "file bytes [" + off + ", " + (off + len) + ") should be 0x" + Integer.toHexString(value));
    }

    /** qemu-img map JSON as "start length data zero" lines, adjacent equal entries merged. */
    static List<String> mapRanges(JsonNode map) {
        List<long[]> r = new ArrayList<>();
        for (JsonNode e : map) {
            long start = e.get("start").asLong();
            long len = e.get("length").asLong();
            long data = e.get("data").asBoolean() ? 1 : 0;
            long zero = e.get("zero").asBoolean() ? 1 : 0;
            long[] last = r.isEmpty() ? null : r.get(r.size() - 1);
            if (last != null && last[0] + last[1] == start && last[2] == data && last[3] == zero) {
                last[1] += len;
            } else {
                r.add(new long[] {start, len, data, zero});
            }
        }
        return r.stream().map(Arrays::toString).toList();
    }
}
