package dev.shear.systest.bitmap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.bitmap.BitmapManager;
import dev.shear.block.BlockDevice;
import dev.shear.block.ImageFormat;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2Image;
import dev.shear.systest.tools.NbdInfo;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import dev.shear.systest.tools.QemuNbd;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearCli;
import dev.shear.systest.tools.ToolResult;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Bitmaps Shear WRITES, against QEMU on twin images (dirty-bitmaps.md §4, §5): the same guest writes
 * through Shear's tracking stack (BitmapManager TRACKING: image, DirtyTracker; the Java API until
 * qcow2 NBD exports are writable) and through qemu-io; the same {@code shear bitmap} and
 * {@code qemu-img bitmap} command lines. Compared: {@code qemu-img info}'s bitmap list, {@code
 * qemu-nbd -B} + {@code nbdinfo --map=qemu:dirty-bitmap:X} for every bitmap, and {@code qemu-img
 * check} clean on what Shear stored. Then a SIGKILL of a process tracking writes: bitmaps left
 * in_use, refused by Shear.
 */
@RequiresTools({"qemu-img", "qemu-io", "qemu-nbd", "nbdinfo"})
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class PersistentBitmapWriteDifferentialTest {
    private static final long SEED = Long.getLong("shear.seed", 20261123L);
    private static final long SIZE = (256L << 20) + 7 * 512;

    @TempDir
    Path dir;
    private final QemuImg qemuImg = new QemuImg();

    /** One guest change: 0 write, 1 write-zeroes, 2 write-zeroes with unmap, 3 discard. */
    record Change(int kind, long offset, long length) {
        String qemuIo() {
            return switch (kind) {
                case 0 -> QemuIo.write(0x33, offset, length);
                case 1 -> QemuIo.writeZeroes(offset, length, false);
                case 2 -> QemuIo.writeZeroes(offset, length, true);
                default -> QemuIo.discard(offset, length);
            };
        }

        void apply(BlockDevice d) throws IOException {
            switch (kind) {
                case 0 -> d.write(offset, ByteBuffer.allocate((int) length), 0);
                case 1, 2 -> d.writeZeroes(offset, length, 0);
                default -> d.discard(offset, length, 0);
            }
        }
    }

    static List<Change> changes(SplittableRandom rnd, int n) {
        List<Change> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            long off = rnd.nextLong(SIZE / 512 - 4096) * 512;
            long len = (1 + rnd.nextLong(rnd.nextBoolean() ? 8 : 4000)) * 512;
            out.add(new Change(rnd.nextInt(4), off, len));
        }
        out.add(new Change(0, SIZE - 1024, 1024));    // the last, partial granule
        return out;
    }

    private Path twin(Path base, String name) throws IOException {
        Path p = dir.resolve(name);
        Files.copy(base, p);
        return p;
    }

    private JsonNode bitmaps(Path image) {
        return qemuImg.infoJson(image, "qcow2").path("format-specific").path("data").path("bitmaps");
    }

    private List<String> map(Path image, String bitmap) {
        try (QemuNbd q = QemuNbd.start(dir, image, "qcow2", "", List.of("--read-only", "--bitmap=" + bitmap))) {
            return new NbdInfo().map(q.uri(), "qemu:dirty-bitmap:" + bitmap);
        }
    }

    private void assertSameBitmaps(Path qemu, Path shear, String step) {
        assertEquals(bitmaps(qemu), bitmaps(shear), step + ": qemu-img info bitmaps");
        for (JsonNode b : bitmaps(qemu)) {
            String name = b.get("name").asText();
            if (b.get("flags").toString().contains("in-use")) {
                continue;
            }
            assertEquals(map(qemu, name), map(shear, name), step + ": dirty map of " + name + " seed=" + SEED);
        }
        assertEquals(QemuImg.CHECK_CLEAN, qemuImg.check(shear, "qcow2").exitCode(), step + ": qemu-img check");
    }

    @Test
    void writesTrackedByShearShouldStoreTheBitmapsQemuStores() throws IOException {
        Path base = dir.resolve("base.qcow2");
        qemuImg.create(base, "qcow2", SIZE);
        qemuImg.bitmapAdd(base, "b64k", 64 << 10);
        qemuImg.bitmapAdd(base, "b4k", 4 << 10);
        qemuImg.bitmapAdd(base, "b512", 512);
        qemuImg.bitmapAdd(base, "dis", 1 << 20);
        qemuImg.bitmapDisable(base, "dis");
        Path q = twin(base, "q.qcow2");
        Path s = twin(base, "s.qcow2");
        SplittableRandom rnd = new SplittableRandom(SEED);
        for (int round = 0; round < 2; round++) {
            List<Change> cs = changes(rnd, 40);
            List<String> cmds = new ArrayList<>();
            for (Change c : cs) {
                cmds.add(c.qemuIo());
            }
            new QemuIo().run(q, "qcow2", cmds);
            BitmapManager m = BitmapManager.open((Qcow2Image) Images.open(s, ImageFormat.QCOW2, false, null),
                    BitmapManager.Mode.TRACKING);
            assertTrue(qemuImg.run("info", "-U", s.toString()).stdout().contains("in-use"),
                    "in_use on disk while tracking");
            try (BlockDevice d = m.device()) {
                for (Change c : cs) {
                    c.apply(d);
                }
            }
            assertSameBitmaps(q, s, "round " + round);
        }
    }

    @Test
    void shearBitmapShouldMatchQemuImgBitmapStepByStep() throws IOException {
        Path base = dir.resolve("base.qcow2");
        qemuImg.create(base, "qcow2", SIZE, "cluster_size=4096");
        Path other = dir.resolve("other.qcow2");
        qemuImg.create(other, "qcow2", SIZE);
        qemuImg.bitmapAdd(other, "o", 512);
        new QemuIo().run(other, "qcow2", List.of(QemuIo.write(1, 3 << 20, 5000)));
        Path q = twin(base, "q.qcow2");
        Path s = twin(base, "s.qcow2");
        SplittableRandom rnd = new SplittableRandom(SEED + 1);
        List<List<String>> steps = List.of(
                List.of("--add", "-g", "4K", "x"),
                List.of("--add", "--disable", "y"),
                List.of("WRITES"),
                List.of("--merge", "x", "y"),
                List.of("--add", "-g", "1M", "--disable", "--merge", "x", "z"),
                List.of("--merge", "o", "-b", other.toString(), "-F", "qcow2", "x"),
                List.of("WRITES"),
                List.of("--enable", "--clear", "y"),
                List.of("WRITES"),
                List.of("--remove", "x"),
                List.of("--disable", "z"));
        for (List<String> step : steps) {
            if (step.get(0).equals("WRITES")) {
                List<String> cmds = new ArrayList<>();
                for (Change c : changes(rnd, 20)) {
                    cmds.add(c.qemuIo());
                }
                new QemuIo().run(q, "qcow2", cmds);
                new QemuIo().run(s, "qcow2", cmds);
                continue;
            }
            List<String> opts = new ArrayList<>(step.subList(0, step.size() - 1));
            String name = step.get(step.size() - 1);
            List<String> qa = new ArrayList<>(List.of("bitmap", "-f", "qcow2"));
            qa.addAll(opts);
            qa.add(q.toString());
            qa.add(name);
            ToolResult qr = qemuImg.run(qa.toArray(new String[0]));
            assertEquals(0, qr.exitCode(), qr.toString());
            List<String> sa = new ArrayList<>(List.of("bitmap", "-f", "qcow2"));
            sa.addAll(opts);
            sa.add(s.toString());
            sa.add(name);
            ToolResult sr = ShearCli.run(sa.toArray(new String[0]));
            assertEquals(0, sr.exitCode(), sr.toString());
            assertSameBitmaps(q, s, String.join(" ", step));
        }
    }

    @Test
    void badBitmapCommandsShouldChangeNothing() throws IOException {
        Path img = dir.resolve("img.qcow2");
        qemuImg.create(img, "qcow2", SIZE);
        qemuImg.bitmapAdd(img, "a", 65536);
        Path bigger = dir.resolve("bigger.qcow2");
        qemuImg.create(bigger, "qcow2", SIZE + 512);
        qemuImg.bitmapAdd(bigger, "a", 65536);
        byte[] before = Files.readAllBytes(img);
        String[][] bad = {
            {"--add", "n".repeat(1024), "1024 bytes"},
            {"--add", "-g", "100", "g", "granularity 100"},
            {"--add", "-g", "4G", "g", "granularity 4294967296"},
            {"--add", "a", "already exists"},
            {"--clear", "nope", "not found"},
            {"--add", "--merge", "a", "-b", bigger.toString(), "new", "the image size"},
            {"--add", "--merge", "missing", "new", "not found"}};
        for (String[] b : bad) {
            List<String> a = new ArrayList<>(List.of("bitmap"));
            a.addAll(Arrays.asList(b).subList(0, b.length - 2));
            a.add(img.toString());
            a.add(b[b.length - 2]);
            ToolResult r = ShearCli.run(a.toArray(new String[0]));
            assertEquals(1, r.exitCode(), r.toString());
            assertTrue(r.stderr().contains(b[b.length - 1]), r.stderr());
            assertEquals(1, r.stderr().strip().lines().count(), r.stderr());
            assertTrue(Arrays.equals(before, Files.readAllBytes(img)), "unchanged after " + a);
        }
    }

    /** A child JVM tracking writes is SIGKILLed: QEMU and Shear then see in_use; only --remove works. */
    @Test
    void sigkillWhileTrackingShouldLeaveBitmapsInUseAndRefused() throws Exception {
        Path img = dir.resolve("k.qcow2");
        qemuImg.create(img, "qcow2", SIZE);
        qemuImg.bitmapAdd(img, "c1", 65536);
        String java = ProcessHandle.current().info().command().orElse("java");
        Process p = new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"),
                TrackingHolder.class.getName(), img.toString()).redirectErrorStream(true).start();
        try {
            BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
            String line = r.readLine();
            assertEquals("READY", line, "child output");
            p.destroyForcibly();     // SIGKILL
            assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        } finally {
            p.destroyForcibly();
        }
        JsonNode b = bitmaps(img).get(0);
        assertTrue(b.get("flags").toString().contains("in-use"), b.toString());
        assertEquals(QemuImg.CHECK_CLEAN, qemuImg.check(img, "qcow2").exitCode());
        ToolResult clear = ShearCli.run("bitmap", "--clear", img.toString(), "c1");
        assertEquals(1, clear.exitCode());
        assertTrue(clear.stderr().contains("inconsistent") && clear.stderr().contains("next backup must be full"),
                clear.stderr());
        ToolResult serve = ShearCli.run("serve", "-k", dir.resolve("s.sock").toString(), "-r", "-B", "c1",
                img.toString());
        assertEquals(1, serve.exitCode(), serve.toString());
        assertTrue(serve.stderr().contains("inconsistent"), serve.stderr());
        ToolResult remove = ShearCli.run("bitmap", "--remove", img.toString(), "c1");
        assertEquals(0, remove.exitCode(), remove.toString());
        assertFalse(qemuImg.run("info", img.toString()).stdout().contains("c1"));
        assertEquals(QemuImg.CHECK_CLEAN, qemuImg.check(img, "qcow2").exitCode());
    }
}
