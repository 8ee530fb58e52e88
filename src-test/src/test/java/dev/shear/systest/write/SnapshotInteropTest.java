package dev.shear.systest.write;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearCli;
import dev.shear.systest.tools.ToolResult;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code shear snapshot} against qemu-img: after every operation {@code qemu-img check} is clean,
 * {@code qemu-img snapshot -l} and {@code shear snapshot -l} print the same text, and every snapshot
 * ({@code qemu-img convert -l snapshot.name=X}) and the active disk equal the content at the time they
 * were taken / applied. Snapshots made by either tool are applied and deleted by the other.
 */
@RequiresTools({"qemu-img", "qemu-io"})
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class SnapshotInteropTest {
    @TempDir
    Path dir;

    private final QemuImg qemuImg = new QemuImg();
    private final QemuIo qemuIo = new QemuIo();

    private void shear(String... args) {
        ToolResult r = ShearCli.run(args);
        assertEquals(0, r.exitCode(), String.join(" ", args) + ": " + r.stderr());
    }

    /** A raw copy of the active disk (the model of "content at this time"). */
    private Path capture(Path img, String name) {
        Path raw = dir.resolve(name + ".raw");
        qemuImg.convertToRaw(img, "qcow2", raw);
        return raw;
    }

    private void assertConsistent(Path img, String when) {
        QemuImg.CheckResult c = qemuImg.check(img, "qcow2");
        assertEquals(QemuImg.CHECK_CLEAN, c.exitCode(), when + ": " + c.raw().stdout() + c.raw().stderr());
        ToolResult s = ShearCli.run("snapshot", "-l", img.toString());
        assertEquals(0, s.exitCode(), s.stderr());
        assertEquals(qemuImg.snapshotList(img), s.stdout(), when + ": snapshot -l");
    }

    private void assertSnapshot(Path img, String name, Path model) {
        Path out = dir.resolve("snap-" + name + ".raw");
        qemuImg.convertSnapshotToRaw(img, name, out);
        assertTrue(qemuImg.compare(out, "raw", model, "raw"), "qemu-img reads snapshot " + name);
        Path viaShear = dir.resolve("shear-snap-" + name + ".raw");
        shear("convert", "-f", "qcow2", "-l", "snapshot.name=" + name, "-O", "raw", img.toString(),
                viaShear.toString());
        assertTrue(qemuImg.compare(viaShear, "raw", model, "raw"), "shear reads snapshot " + name);
    }

    @ParameterizedTest
    @ValueSource(strings = {"cluster_size=65536", "cluster_size=512", "cluster_size=4096,refcount_bits=8",
        "compat=0.10", "extended_l2=on", "cluster_size=2M"})
    void shearSnapshotsShouldMatchQemu(String options) {
        long size = 8L << 20;
        long cs = options.contains("2M") ? 2L << 20 : options.contains("=512") ? 512 : 65536;
        Path img = dir.resolve("s.qcow2");
        qemuImg.create(img, "qcow2", size, options.split(","));
        // (qemu-io 7.2 fails compressed writes of 2 MiB clusters with EIO: those get none)
        String compressed = cs < (2L << 20) ? "write -c -P 0x13 " + (4L << 20) + " " + cs : "flush";
        qemuIo.run(img, "qcow2", List.of(QemuIo.write(0x11, 0, 3 * cs), compressed,
                QemuIo.write(0x12, 5L << 20, 100_000), QemuIo.writeZeroes(size - cs, cs, false)));
        Path m0 = capture(img, "m0");
        shear("snapshot", "-c", "first", img.toString());
        assertConsistent(img, options + " after create");
        qemuIo.run(img, "qcow2", List.of(QemuIo.write(0x21, cs / 2, cs), QemuIo.write(0x22, 6L << 20, 70_000),
                QemuIo.discard(0, cs)));
        assertConsistent(img, options + " after writes");
        Path m1 = capture(img, "m1");
        qemuImg.snapshotCreate(img, "second");   // QEMU's snapshot next to ours
        shear("snapshot", "-c", "third", img.toString());
        assertConsistent(img, options + " after mixed creates");
        assertSnapshot(img, "first", m0);
        assertSnapshot(img, "second", m1);
        assertSnapshot(img, "third", m1);
        shear("snapshot", "-a", "first", img.toString());
        assertConsistent(img, options + " after apply");
        assertTrue(qemuImg.compare(img, "qcow2", m0, "raw"), options + " active after apply");
        qemuIo.run(img, "qcow2", List.of(QemuIo.write(0x31, 0, 2 * cs)));
        assertConsistent(img, options + " after writes over the applied snapshot");
        assertSnapshot(img, "first", m0);
        shear("snapshot", "-d", "second", img.toString());   // QEMU-made, deleted by Shear
        assertConsistent(img, options + " after delete");
        qemuImg.tool().check("snapshot", "-d", "third", img.toString());   // Shear-made, deleted by QEMU
        assertConsistent(img, options + " after qemu delete");
        shear("snapshot", "-a", "1", img.toString());   // by ID
        assertTrue(qemuImg.compare(img, "qcow2", m0, "raw"));
        shear("snapshot", "-d", "first", img.toString());
        assertConsistent(img, options + " after deleting all");
        qemuIo.run(img, "qcow2", List.of(QemuIo.write(0x41, 0, 4 * cs)));
        assertEquals(QemuImg.CHECK_CLEAN, qemuImg.check(img, "qcow2").exitCode());
    }

    @Test
    void snapshotOfOneBitRefcountImageShouldBeRefusedAndChangeNothing() {
        Path img = dir.resolve("r1.qcow2");
        qemuImg.create(img, "qcow2", 1L << 20, "refcount_bits=1");
        qemuIo.run(img, "qcow2", List.of(QemuIo.write(0x11, 0, 200_000)));
        ToolResult r = ShearCli.run("snapshot", "-c", "x", img.toString());
        assertEquals(1, r.exitCode(), r.stderr());
        assertTrue(r.stderr().startsWith("shear: Could not create snapshot 'x': "), r.stderr());
        assertConsistent(img, "refused create");
    }

    @Test
    void refcountOverflowShouldFailLikeQemuAndLeakAtMost() {
        // 16 compressed 4 KiB clusters share one host cluster: refcount 15, the 4-bit maximum
        Path img = dir.resolve("r4.qcow2");
        qemuImg.create(img, "qcow2", 8L << 20, "cluster_size=4096", "refcount_bits=4");
        qemuIo.run(img, "qcow2", List.of(QemuIo.write(0x11, 0, 196608), "write -c -P 0x13 4194304 65536"));
        Path m0 = capture(img, "m0");
        ToolResult r = ShearCli.run("snapshot", "-c", "x", img.toString());
        assertEquals(1, r.exitCode(), r.stderr());
        QemuImg.CheckResult c = qemuImg.check(img, "qcow2");
        assertTrue(c.exitCode() == QemuImg.CHECK_CLEAN || c.exitCode() == QemuImg.CHECK_LEAKS,
                c.raw().stdout() + c.raw().stderr());
        assertTrue(qemuImg.compare(img, "qcow2", m0, "raw"));
        assertEquals("", qemuImg.snapshotList(img));
    }

    @Test
    void unknownSnapshotShouldFailLikeQemuImg() {
        Path img = dir.resolve("u.qcow2");
        qemuImg.create(img, "qcow2", 1L << 20);
        ToolResult r = ShearCli.run("snapshot", "-d", "nope", img.toString());
        assertEquals(1, r.exitCode());
        assertEquals("shear: Could not delete snapshot 'nope': snapshot not found\n", r.stderr());
        assertEquals(1, ShearCli.run("snapshot", "-a", "nope", img.toString()).exitCode());
        assertEquals("", ShearCli.run("snapshot", "-l", img.toString()).stdout());
        assertEquals("", qemuImg.snapshotList(img));
    }
}
