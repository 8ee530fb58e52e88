package dev.shear.systest.write;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.images.ImageMatrix;
import dev.shear.systest.tools.NbdCopy;
import dev.shear.systest.tools.NbdInfo;
import dev.shear.systest.tools.Qcow2HeaderFields;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import dev.shear.systest.tools.QemuNbd;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.Tool;
import dev.shear.systest.tools.ToolResult;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Writable qcow2 exports against QEMU: the same qemu-io write pattern (patterns, random data, write -z
 * with and without unmap, discard, unaligned offsets and lengths) sent through a Shear export and applied
 * by qemu-io directly to a copy of the image gives images that {@code qemu-img compare} equal, and the
 * Shear-written image checks clean once the server stopped (plain, over a backing chain, extended L2).
 * nbdcopy restores a raw file into a qcow2 export; images written through Shear read the same through
 * qemu-nbd and the other way round; the advertised flags match qemu-nbd's for a writable qcow2 export;
 * {@code -r} and {@code -l} stay read-only; SIGTERM leaves a lazy-refcount image clean (dirty bit clear).
 * Seeds are printed in failures; {@code -Dshear.seed} replays.
 */
@RequiresTools({"qemu-img", "qemu-io", "qemu-nbd", "nbdcopy", "nbdinfo"})
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class Qcow2ExportWriteInteropTest {
    static final long MIB = 1 << 20;
    static final long SIZE = 16 * MIB;
    static final Duration STOP = Duration.ofSeconds(30);

    @TempDir
    Path dir;

    private final QemuImg qemuImg = new QemuImg();
    private final QemuIo qemuIo = new QemuIo();
    private final Tool qemuIoTool = Tool.named("qemu-io").withTimeout(Duration.ofSeconds(120));
    private final List<AutoCloseable> servers = new ArrayList<>();

    @AfterEach
    void stopServers() throws Exception {
        for (AutoCloseable s : servers) {
            s.close();
        }
    }

    /** A seeded qemu-io command list: every kind of write the NBD client can send, aligned and not. */
    static List<String> pattern(long seed, Path randomFile, long size, int cluster) {
        SplittableRandom r = new SplittableRandom(seed);
        List<String> c = new ArrayList<>();
        for (int i = 0; i < 60; i++) {
            boolean aligned = r.nextInt(3) == 0;
            long len = aligned ? cluster * (long) (1 + r.nextInt(4)) : 1 + r.nextInt(3 * cluster);
            long off = aligned ? cluster * r.nextLong(size / cluster - 4) : r.nextLong(size - len);
            switch (r.nextInt(10)) {
                case 0, 1, 2 -> c.add(QemuIo.write(1 + r.nextInt(255), off, len));
                case 3, 4, 5 -> c.add(QemuIo.writeFrom(randomFile, off, len));
                case 6 -> c.add(QemuIo.writeZeroes(off, len, false));
                case 7 -> c.add(QemuIo.writeZeroes(off, len, true));
                default -> {
                    // Whole clusters only: a partial discard may leave data or zeros (both are right, and
                    // QEMU's qcow2 ignores it while an NBD server may zero it).
                    long a = cluster * r.nextLong(size / cluster - 8);
                    c.add(QemuIo.discard(a, cluster * (long) (1 + r.nextInt(8))));
                }
            }
            if (r.nextInt(10) == 0) {
                c.add("flush");
            }
        }
        c.add("write -q -P 0x77 " + (size - 1) + " 1");   // the last byte
        return c;
    }

    private ShearProcess shear(String name, Path image, String... args) {
        ShearProcess s = ShearProcess.serve(dir.resolve(name + ".sock"), name, image, args);
        servers.add(s);
        return s;
    }

    private void qemuIoOver(String uri, List<String> commands) {
        List<String> a = new ArrayList<>(List.of("-f", "raw"));
        for (String c : commands) {
            a.add("-c");
            a.add(c);
        }
        a.add(uri);
        ToolResult r = qemuIoTool.check(a);
        assertFalse((r.stdout() + r.stderr()).contains("failed"), "qemu-io over NBD: " + r.stdout() + r.stderr());
    }

    private static void stop(ShearProcess s) {
        s.terminate();
        assertEquals(0, s.awaitExit(STOP), "exit status after SIGTERM; stderr:\n" + s.stderr());
    }

    /** Makes the image (and its backing file, both in {@link #dir}) for one case; returns the overlay path. */
    private Path makeImage(String kind, String name) {
        Path img = dir.resolve(name);
        switch (kind) {
            case "plain" -> qemuImg.create(img, "qcow2", SIZE);
            case "extended_l2" -> qemuImg.create(img, "qcow2", SIZE, "extended_l2=on,cluster_size=64k");
            case "backing" -> {
                Path base = dir.resolve("base.qcow2");
                if (!Files.exists(base)) {
                    qemuImg.create(base, "qcow2", SIZE);
                    qemuIo.run(base, "qcow2", List.of(QemuIo.write(0x5a, 0, SIZE / 2),
                            QemuIo.write(0xa5, SIZE / 2 + 4096, 3 * MIB + 17)));
                }
                qemuImg.createOverlay(img, "base.qcow2", "qcow2", SIZE);
                qemuIo.run(img, "qcow2", List.of(QemuIo.write(0x3c, MIB, MIB)));
            }
            default -> throw new IllegalArgumentException(kind);
        }
        return img;
    }

    @ParameterizedTest
    @ValueSource(strings = {"plain", "backing", "extended_l2"})
    void qemuIoThroughWritableExportShouldMatchQemuIoOnTheImage(String kind) throws IOException {
        long seed = Long.getLong("shear.seed", System.nanoTime());
        String ctx = kind + " seed=" + seed;
        Path random = dir.resolve("random.bin");
        ImageMatrix.writeRandomFile(random, 4 * MIB, seed);
        Path viaShear = makeImage(kind, "shear.qcow2");
        Path direct = dir.resolve("direct.qcow2");
        Files.copy(viaShear, direct, StandardCopyOption.REPLACE_EXISTING);
        List<String> commands = pattern(seed, random, SIZE, 64 * 1024);

        ShearProcess s = shear("disk", viaShear);
        qemuIoOver(s.uri(), commands);
        stop(s);
        qemuIo.run(direct, "qcow2", commands);

        QemuImg.CheckResult check = qemuImg.check(viaShear, "qcow2");
        assertEquals(QemuImg.CHECK_CLEAN, check.exitCode(), ctx + ": qemu-img check of the image Shear wrote\n"
                + check.raw().stdout() + check.raw().stderr());
        assertTrue(qemuImg.compare(direct, "qcow2", viaShear, "qcow2"), ctx + ": qemu-img compare, commands "
                + commands);
        assertEquals(0, header(viaShear).incompatibleFeatures() & Qcow2HeaderFields.INCOMPAT_DIRTY, ctx);
    }

    @Test
    void nbdcopyIntoWritableQcow2ExportShouldRestoreEveryByte() throws IOException {
        Path source = dir.resolve("source.raw");
        ImageMatrix.writeRandomFile(source, SIZE, 11);
        try (FileChannel ch = FileChannel.open(source, java.nio.file.StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate((int) (3 * MIB)), 4 * MIB);   // a zero run: nbdcopy sends it as zero
        }
        Path target = dir.resolve("target.qcow2");
        qemuImg.create(target, "qcow2", SIZE);
        ShearProcess s = shear("target", target, "-f", "qcow2");
        new NbdCopy().copy(source.toString(), s.uri(), "--flush");
        stop(s);
        QemuImg.CheckResult check = qemuImg.check(target, "qcow2");
        assertEquals(QemuImg.CHECK_CLEAN, check.exitCode(), check.raw().stdout() + check.raw().stderr());
        assertTrue(qemuImg.compare(source, "raw", target, "qcow2"), "restored image equals the source");
    }

    @Test
    void imagesWrittenByOneServerShouldReadEqualThroughTheOther() throws IOException {
        long seed = Long.getLong("shear.seed", System.nanoTime());
        Path random = dir.resolve("random.bin");
        ImageMatrix.writeRandomFile(random, 4 * MIB, seed);
        List<String> commands = pattern(seed, random, SIZE, 64 * 1024);
        Path byShear = makeImage("plain", "by-shear.qcow2");
        Path byQemu = makeImage("plain", "by-qemu.qcow2");
        Path direct = makeImage("plain", "direct.qcow2");
        qemuIo.run(direct, "qcow2", commands);
        Path expected = dir.resolve("expected.raw");
        qemuImg.convertToRaw(direct, "qcow2", expected);

        ShearProcess s = shear("w", byShear);
        qemuIoOver(s.uri(), commands);
        stop(s);
        // qemu-nbd ignores NBD_CMD_TRIM unless told --discard=unmap (Shear always honours it).
        try (QemuNbd q = QemuNbd.start(dir, byQemu, "qcow2", "w", List.of("--discard=unmap"))) {
            qemuIoOver(q.uri(), commands);
        }
        assertTrue(qemuImg.compare(direct, "qcow2", byQemu, "qcow2"), "oracle: qemu-nbd wrote the pattern; seed="
                + seed);

        byte[] want = Files.readAllBytes(expected);
        try (QemuNbd q = QemuNbd.start(dir, byShear, "qcow2", "r", List.of("--read-only"))) {
            assertArrayEquals(want, copy(q.uri(), "a.raw"), "qemu-nbd reading the image Shear wrote; seed=" + seed);
        }
        ShearProcess r = shear("r", byQemu, "-r");
        assertArrayEquals(want, copy(r.uri(), "b.raw"), "Shear reading the image qemu-nbd wrote; seed=" + seed);
        assertEquals(QemuImg.CHECK_CLEAN, qemuImg.check(byShear, "qcow2").exitCode());
    }

    private byte[] copy(String uri, String name) throws IOException {
        Path out = dir.resolve(name);
        new NbdCopy().copy(uri, out.toString());
        return Files.readAllBytes(out);
    }

    static final List<String> FLAGS = List.of("is_read_only", "can_flush", "can_fua", "can_trim", "can_zero",
            "can_fast_zero", "can_df", "block_size_maximum");

    @Test
    void writableQcow2ExportShouldAdvertiseWhatQemuNbdAdvertises() {
        Path a = makeImage("plain", "a.qcow2");
        Path b = makeImage("plain", "b.qcow2");
        NbdInfo info = new NbdInfo();
        JsonNode s = info.json(shear("a", a).uri());
        JsonNode q;
        try (QemuNbd qn = QemuNbd.start(dir, b, "qcow2", "b", List.of("--discard=unmap"))) {
            q = info.json(qn.uri());
        }
        JsonNode se = s.get("exports").get(0);
        JsonNode qe = q.get("exports").get(0);
        for (String f : FLAGS) {
            assertEquals(qe.get(f), se.get(f), f + "\nqemu-nbd: " + qe + "\nshear: " + se);
        }
        assertFalse(se.get("is_read_only").asBoolean(), se.toString());
        assertEquals(65536, se.get("block_size_preferred").asInt(), se.toString());
    }

    @Test
    void readOnlyAndSnapshotExportsShouldStayReadOnly() throws IOException {
        Path img = makeImage("plain", "ro.qcow2");
        qemuIo.run(img, "qcow2", List.of(QemuIo.write(0x11, 0, MIB)));
        qemuImg.snapshotCreate(img, "snap1");
        byte[] before = Files.readAllBytes(img);
        NbdInfo info = new NbdInfo();
        ShearProcess ro = shear("ro", img, "-r");
        assertTrue(info.json(ro.uri()).get("exports").get(0).get("is_read_only").asBoolean());
        ToolResult w = qemuIoTool.run("-f", "raw", "-c", "write -P 0x55 0 512", ro.uri());
        assertTrue(w.exitCode() != 0 || !w.stderr().isEmpty() || w.stdout().contains("failed"), w.toString());
        stop(ro);
        ShearProcess snap = shear("snap", img, "-l", "snap1");
        JsonNode e = info.json(snap.uri()).get("exports").get(0);
        assertTrue(e.get("is_read_only").asBoolean() && !e.get("can_trim").asBoolean()
                && !e.get("can_zero").asBoolean(), e.toString());
        stop(snap);
        assertArrayEquals(before, Files.readAllBytes(img), "-r and -l exports left the file untouched");
    }

    @Test
    void sigtermShouldLeaveALazyRefcountImageCleanAndClosed() throws IOException {
        Path img = dir.resolve("lazy.qcow2");
        qemuImg.create(img, "qcow2", SIZE, "lazy_refcounts=on");
        ShearProcess s = shear("lazy", img);
        qemuIoOver(s.uri(), List.of(QemuIo.write(0x42, 0, 3 * MIB), QemuIo.write(0x43, 9 * MIB + 5, 70_000)));
        long whileServing = header(img).incompatibleFeatures();
        stop(s);
        assertNotEquals(0, whileServing & Qcow2HeaderFields.INCOMPAT_DIRTY,
                "lazy refcounts: the dirty bit is set while the image is open for writing");
        assertEquals(0, header(img).incompatibleFeatures() & Qcow2HeaderFields.INCOMPAT_DIRTY,
                "dirty bit cleared by the clean close");
        QemuImg.CheckResult check = qemuImg.check(img, "qcow2");
        assertEquals(QemuImg.CHECK_CLEAN, check.exitCode(), check.raw().stdout() + check.raw().stderr());
        qemuIo.run(img, "qcow2", List.of("read -q -P 0x42 0 3M", "read -q -P 0x43 9437189 70000"));
    }

    static Qcow2HeaderFields header(Path img) throws IOException {
        try (FileChannel ch = FileChannel.open(img)) {
            ByteBuffer b = ByteBuffer.allocate(112).order(ByteOrder.BIG_ENDIAN);
            ch.read(b, 0);
            return Qcow2HeaderFields.decode(b.flip());
        }
    }
}
