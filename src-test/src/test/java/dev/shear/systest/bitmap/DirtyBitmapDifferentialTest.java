package dev.shear.systest.bitmap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.systest.tools.Corruptor;
import dev.shear.systest.tools.NbdInfo;
import dev.shear.systest.tools.Nbdsh;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import dev.shear.systest.tools.QemuNbd;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearCli;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.Tool;
import dev.shear.systest.tools.ToolResult;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * qemu:dirty-bitmap:NAME served by Shear against {@code qemu-nbd -B NAME} on the same image, whose
 * persistent bitmaps QEMU itself recorded (qemu-io opens the qcow2 read-write and tracks every
 * enabled persistent bitmap; dirty-bitmaps.md §4): {@code nbdinfo --map} line for line, and libnbd
 * block_status with base:allocation and the bitmap in one request, over unaligned ranges. Then the
 * refusals: a bitmap left in_use (qemu-io killed by {@code abort}, or the flag poked) and a missing one.
 *
 * <p>Not covered here: {@code shear info} listing bitmaps like {@code qemu-img info} (the info command
 * is on branch readpath, not in main yet).
 */
@RequiresTools({"qemu-img", "qemu-io", "qemu-nbd", "nbdinfo", "python3-libnbd"})
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class DirtyBitmapDifferentialTest {
    private static final long SEED = Long.getLong("shear.seed", 20261123L);
    private static final long SIZE = (4L << 30) + 12345 * 512;   // not a multiple of any granularity
    /** name, granularity; "dis" is disabled half-way, "late" added half-way. */
    private static final List<String> BITMAPS = List.of("b64k", "b1m", "b512", "dis", "late");

    @TempDir
    static Path dir;
    private static Path image;

    @BeforeAll
    static void buildImage() {
        QemuImg qemuImg = new QemuImg();
        image = dir.resolve("bitmaps.qcow2");
        qemuImg.create(image, "qcow2", SIZE);
        qemuImg.bitmapAdd(image, "b64k", 64 << 10);
        qemuImg.bitmapAdd(image, "b1m", 1 << 20);
        qemuImg.bitmapAdd(image, "b512", 512);
        qemuImg.bitmapAdd(image, "dis", 64 << 10);
        SplittableRandom rnd = new SplittableRandom(SEED);
        new QemuIo().run(image, "qcow2", randomWrites(rnd, 30));
        qemuImg.bitmapDisable(image, "dis");
        qemuImg.bitmapAdd(image, "late", 128 << 10);
        new QemuIo().run(image, "qcow2", randomWrites(rnd, 30));
        // Writes near the end: the last, partial granule of every bitmap.
        new QemuIo().run(image, "qcow2", List.of(QemuIo.write(0x5a, SIZE - 1536, 1024)));
    }

    /** Writes, zero-writes (with and without unmap) and discards at 512-aligned, granule-unaligned places. */
    private static List<String> randomWrites(SplittableRandom rnd, int n) {
        List<String> cmds = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            long off = rnd.nextLong(SIZE / 512 - 8192) * 512;
            long len = (1 + rnd.nextLong(rnd.nextBoolean() ? 16 : 8192)) * 512;
            cmds.add(switch (rnd.nextInt(5)) {
                case 0 -> QemuIo.writeZeroes(off, len, false);
                case 1 -> QemuIo.writeZeroes(off, len, true);
                case 2 -> QemuIo.discard(off, len);
                default -> QemuIo.write(i, off, len);
            });
        }
        return cmds;
    }

    private static List<String> bitmapArgs(String flag) {
        List<String> a = new ArrayList<>();
        for (String b : BITMAPS) {
            a.add(flag);
            a.add(b);
        }
        return a;
    }

    @Test
    void dirtyBitmapMapsShouldMatchQemuNbdLineForLine() {
        List<String> qemuArgs = new ArrayList<>(List.of("--read-only"));
        for (String b : BITMAPS) {
            qemuArgs.add("--bitmap=" + b);
        }
        List<String> shearArgs = new ArrayList<>(List.of("-r"));
        shearArgs.addAll(bitmapArgs("-B"));
        NbdInfo nbdinfo = new NbdInfo();
        try (QemuNbd qemu = QemuNbd.start(dir, image, "qcow2", "", qemuArgs);
                ShearProcess shear = ShearProcess.serve(dir.resolve("shear.sock"), "", image,
                        shearArgs.toArray(new String[0]))) {
            for (String b : BITMAPS) {
                String ctx = "qemu:dirty-bitmap:" + b;
                List<String> want = nbdinfo.map(qemu.uri(), ctx);
                List<String> got = nbdinfo.map(shear.uri(), ctx);
                assertTrue(want.stream().anyMatch(l -> l.endsWith("dirty")), b + ": QEMU recorded nothing: " + want);
                assertEquals(want, got, "seed=" + SEED + " nbdinfo --map=" + ctx + "\nshear stderr: " + shear.stderr());
            }
            assertNotEquals(nbdinfo.map(qemu.uri(), "qemu:dirty-bitmap:dis"),
                    nbdinfo.map(qemu.uri(), "qemu:dirty-bitmap:b64k"), "the disabled bitmap stopped recording");
            // The listing offers exactly the exported bitmaps. [qemu-nbd] lists -B bitmaps in reverse command-line
            // order (its option list is built by prepending); Shear keeps the order given: compare as sets.
            assertEquals(sorted(contexts(nbdinfo, qemu.uri())), sorted(contexts(nbdinfo, shear.uri())));
            assertEquals(6, contexts(nbdinfo, shear.uri()).size());

            Nbdsh nbdsh = new Nbdsh();
            for (String b : BITMAPS) {
                String ctx = "qemu:dirty-bitmap:" + b;
                String want = nbdsh.script(BLOCK_STATUS, qemu.uri(), ctx, Long.toString(SEED)).stdout();
                String got = nbdsh.script(BLOCK_STATUS, shear.uri(), ctx, Long.toString(SEED)).stdout();
                assertTrue(want.contains(ctx), want);
                assertEquals(want, got, "seed=" + SEED + " libnbd block_status with base:allocation + " + ctx
                        + ", first difference:\n" + firstDifference(want, got));
            }
        }
    }

    /** The first differing line of two outputs, with the request it belongs to. */
    static String firstDifference(String want, String got) {
        List<String> a = want.lines().toList();
        List<String> b = got.lines().toList();
        String request = "";
        for (int i = 0; i < Math.max(a.size(), b.size()); i++) {
            String x = i < a.size() ? a.get(i) : "<end>";
            String y = i < b.size() ? b.get(i) : "<end>";
            if (x.startsWith("request")) {
                request = x;
            }
            if (!x.equals(y)) {
                return request + "\n  qemu-nbd: " + x + "\n  shear:    " + y;
            }
        }
        return "none";
    }

    private static List<String> sorted(List<String> l) {
        return l.stream().sorted().toList();
    }

    private static List<String> contexts(NbdInfo nbdinfo, String uri) {
        List<String> out = new ArrayList<>();
        nbdinfo.listJson(uri).get("exports").get(0).get("contexts").forEach(n -> out.add(n.asText()));
        return out;
    }

    /**
     * argv: URI, bitmap context, seed. Prints every extent of the bitmap context, and the range that
     * base:allocation covers in the same reply (both contexts must cover the same range), for the whole
     * disk in 2 GiB steps (libnbd's 32-bit counts) and for 40 random unaligned ranges. base:allocation's
     * own extents are not compared here: Shear reports ZERO_ALLOC clusters as 2 (zero) where qemu-nbd
     * reports 3 (hole, zero) — a base:allocation difference of the read path, not of bitmaps.
     */
    private static final String BLOCK_STATUS = String.join("\n",
            "import sys, random, nbd",
            "h = nbd.NBD()",
            "h.add_meta_context('base:allocation')",
            "h.add_meta_context(sys.argv[2])",
            "h.connect_uri(sys.argv[1])",
            "size = h.get_size()",
            "rnd = random.Random(int(sys.argv[3]))",
            "ranges = [(o, min(1 << 31, size - o)) for o in range(0, size, 1 << 31)]",
            "for i in range(40):",
            "    o = rnd.randrange(size - 1)",
            "    ranges.append((o, 1 + rnd.randrange(min(size - o, 1 << 28))))",
            "for (off, count) in ranges:",
            "    out = []",
            "    def cb(ctx, o, entries, err):",
            "        if ctx == 'base:allocation':",
            "            out.append('%s %d covers %d' % (ctx, o, sum(entries[0::2])))",
            "        else:",
            "            out.append('%s %d %s' % (ctx, o, list(entries)))",
            "        return 0",
            "    h.block_status(count, off, cb)",
            "    print('request %d %d' % (off, count))",
            "    for line in sorted(out):",
            "        print(line)",
            "h.shutdown()",
            "");

    /** qemu-io's {@code abort} simulates a crash after a write: every bitmap is left in_use (§4.1). */
    @Test
    void bitmapLeftInUseByACrashShouldBeRefusedLikeQemuNbd() throws Exception {
        Path crashed = dir.resolve("crashed.qcow2");
        Files.copy(image, crashed);
        ToolResult abort = Tool.named("qemu-io").run("-f", "qcow2", "-c", "write 0 64k", "-c", "abort",
                crashed.toString());
        assertNotEquals(0, abort.exitCode(), "qemu-io abort: " + abort);
        assertTrue(new QemuImg().run("info", crashed.toString()).stdout().contains("in-use"));

        ToolResult qemu = Tool.named("qemu-nbd").run("-r", "-k", dir.resolve("q.sock").toString(), "-B", "b64k",
                "-f", "qcow2", crashed.toString());
        assertEquals(1, qemu.exitCode());
        assertTrue(qemu.stderr().contains("Bitmap 'b64k' is inconsistent and cannot be used"), qemu.stderr());

        ToolResult shear = ShearCli.run("serve", "-k", dir.resolve("s.sock").toString(), "-r", "-B", "b64k",
                crashed.toString());
        assertEquals(1, shear.exitCode(), shear.toString());
        assertEquals(1, shear.stderr().strip().lines().count(), "one line: " + shear.stderr());
        assertTrue(shear.stderr().startsWith("shear: bitmap 'b64k': inconsistent (in_use flag set"), shear.stderr());
        assertTrue(shear.stderr().contains("the next backup must be full"), shear.stderr());
    }

    /** Only the poked bitmap is inconsistent: the others still export; the poked one is refused. */
    @Test
    void pokedInUseFlagShouldRefuseThatBitmapOnly() {
        Path poked = dir.resolve("poked.qcow2");
        try {
            Files.copy(image, poked);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        long flags = bitmapFlagsOffset(poked, "b1m");
        Corruptor.pokeInt(poked, flags, Corruptor.peekInt(poked, flags) | 1);
        ToolResult shear = ShearCli.run("serve", "-k", dir.resolve("p.sock").toString(), "-r", "-B", "b64k", "-B",
                "b1m", poked.toString());
        assertEquals(1, shear.exitCode(), shear.toString());
        assertTrue(shear.stderr().startsWith("shear: bitmap 'b1m': inconsistent"), shear.stderr());
        try (ShearProcess ok = ShearProcess.serve(dir.resolve("p2.sock"), "", poked, "-r", "-B", "b64k")) {
            assertEquals(new NbdInfo().map(ok.uri(), "qemu:dirty-bitmap:b64k").isEmpty(), false);
        }
        ToolResult missing = ShearCli.run("serve", "-k", dir.resolve("m.sock").toString(), "-r", "--export",
                "x=" + poked + ",bitmap=nope");
        assertEquals(1, missing.exitCode(), missing.toString());
        assertTrue(missing.stderr().startsWith("shear: bitmap 'nope': not found (expected: one of the image's "
                + "bitmaps: b64k, b1m, b512, dis, late)"), missing.stderr());
    }

    /** File offset of the flags of bitmap {@code name}: walks the header extensions and the directory. */
    static long bitmapFlagsOffset(Path image, String name) {
        int headerLength = Corruptor.peekInt(image, 100);
        long pos = headerLength;
        while (true) {
            int type = Corruptor.peekInt(image, pos);
            int len = Corruptor.peekInt(image, pos + 4);
            if (type == 0) {
                throw new AssertionError("no bitmaps extension in " + image);
            }
            if (type == 0x23852875) {
                long dirSize = Corruptor.peekLong(image, pos + 16);
                long dirOffset = Corruptor.peekLong(image, pos + 24);
                ByteBuffer d = ByteBuffer.wrap(Corruptor.peek(image, dirOffset, (int) dirSize));
                int at = 0;
                while (at < dirSize) {
                    int nameSize = d.getShort(at + 18) & 0xffff;
                    int extra = d.getInt(at + 20);
                    String n = new String(d.array(), at + 24 + extra, nameSize, StandardCharsets.UTF_8);
                    if (n.equals(name)) {
                        return dirOffset + at + 12;
                    }
                    at += (24 + extra + nameSize + 7) & ~7;
                }
                throw new AssertionError("bitmap " + name + " not in the directory of " + image);
            }
            pos += 8 + ((len + 7) & ~7);
        }
    }
}
