package dev.shear.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import dev.shear.block.WriteFlags;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Seeded random operations (writes, zero writes, discards, flushes, reopens; unaligned, across cluster
 * and subcluster boundaries, over a backing file) on a {@link Qcow2Image} and on a {@code byte[]} model
 * of the disk: every read must match the model, and at the end {@link Qcow2Check} must find neither
 * corruption nor leak. Seed printed in every failure; {@code -Dshear.seed=N} replays one.
 *
 * <p>The model encodes the documented semantics: zero writes read as zeros; a discard turns whole
 * clusters into zeros (v3, or v2 without a backing file under the cluster) and leaves partial clusters
 * and v2 clusters over a backing file unchanged; a refused FAST_ZERO changes nothing.
 */
class Qcow2WriteRandomTest {
    @TempDir
    Path dir;

    /** One configuration of the matrix. */
    record Config(int clusterSize, boolean extendedL2, boolean backing, boolean lazy, int refcountBits,
                  int version, int ops) {
        @Override
        public String toString() {
            return "cs=" + clusterSize + (extendedL2 ? " extl2" : "") + (backing ? " backing" : "")
                    + (lazy ? " lazy" : "") + " refbits=" + refcountBits + " v" + version;
        }
    }

    static Stream<Arguments> configs() {
        List<Config> list = new ArrayList<>();
        int[] sizes = {512, 4096, 65536, 2 << 20};
        for (int cs : sizes) {
            int ops = cs == (2 << 20) ? 150 : cs == 65536 ? 1500 : 2500;
            for (int version : new int[] {2, 3}) {
                for (boolean backing : new boolean[] {false, true}) {
                    list.add(new Config(cs, false, backing, false, 16, version, ops));
                }
            }
            if (cs >= 16384) {
                list.add(new Config(cs, true, true, false, 16, 3, ops));
                list.add(new Config(cs, true, false, true, 64, 3, ops));
            }
            list.add(new Config(cs, false, true, true, 1, 3, ops));
            list.add(new Config(cs, false, false, false, 64, 3, ops));
        }
        return list.stream().map(Arguments::of);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("configs")
    void randomOperationsShouldMatchTheModelAndCheckClean(Config cfg) throws IOException {
        long seed = Long.getLong("shear.seed", System.nanoTime());
        String ctx = "seed=" + seed + " (-Dshear.seed=" + seed + ") " + cfg;
        try {
            run(cfg, seed, ctx);
        } catch (AssertionError | IOException | RuntimeException e) {
            throw new AssertionError(ctx + ": " + e, e);
        }
    }

    private void run(Config cfg, long seed, String ctx) throws IOException {
        SplittableRandom rnd = new SplittableRandom(seed);
        int cs = cfg.clusterSize();
        long clusters = cs >= (2 << 20) ? 4 : cs >= 65536 ? 24 : 96;
        long size = clusters * cs - (rnd.nextBoolean() ? 512L * (1 + rnd.nextInt(Math.max(1, cs / 512 - 1))) : 0);
        size = Math.max(size, 512);
        byte[] model = new byte[(int) size];
        Path image = dir.resolve("img.qcow2");
        long backingSize = 0;
        if (cfg.backing()) {
            Path base = dir.resolve("base.raw");
            backingSize = Math.max(512, (size * 3 / 4) & ~511L);
            byte[] b = new byte[(int) backingSize];
            rnd.nextBytes(b);
            Files.write(base, b);
            System.arraycopy(b, 0, model, 0, b.length);
            Qcow2Creator.create(image, new Qcow2CreateOptions(size, cs, cfg.version(), 0, cfg.extendedL2(),
                    cfg.lazy(), cfg.refcountBits(), null, "base.raw", "raw"));
        } else {
            Qcow2Creator.create(image, new Qcow2CreateOptions(size, cs, cfg.version(), 0, cfg.extendedL2(),
                    cfg.lazy(), cfg.refcountBits(), null, null, null));
        }
        Qcow2Image img = open(image, cfg.lazy());
        try {
            for (int op = 0; op < cfg.ops(); op++) {
                long off = randomOffset(rnd, size, cs);
                long len = Math.min(size - off, randomLength(rnd, cs));
                int kind = rnd.nextInt(100);
                String what = "op " + op + " ";
                if (kind < 45) {
                    byte[] data = new byte[(int) len];
                    rnd.nextBytes(data);
                    img.write(off, ByteBuffer.wrap(data), rnd.nextInt(20) == 0 ? WriteFlags.FUA : 0);
                    System.arraycopy(data, 0, model, (int) off, data.length);
                } else if (kind < 60) {
                    int flags = (rnd.nextBoolean() ? WriteFlags.NO_HOLE : 0)
                            | (rnd.nextInt(4) == 0 ? WriteFlags.FAST_ZERO : 0);
                    try {
                        img.writeZeroes(off, len, flags);
                        java.util.Arrays.fill(model, (int) off, (int) (off + len), (byte) 0);
                    } catch (BlockException e) {
                        assertEquals(BlockErrorKind.NOT_SUPPORTED, e.kind(), what + e.getMessage());
                        assertTrue(WriteFlags.has(flags, WriteFlags.FAST_ZERO), what);
                    }
                } else if (kind < 72) {
                    img.discard(off, len, 0);
                    discardModel(model, off, len, cs, size, cfg.version(), backingSize);
                } else if (kind < 78) {
                    img.flush();
                } else if (kind < 80) {
                    img.close();
                    if (!cfg.lazy()) {
                        assertNoCorruption(image, ctx + " after close at " + what, true);
                    }
                    img = open(image, cfg.lazy());
                } else {
                    byte[] got = new byte[(int) len];
                    img.read(off, ByteBuffer.wrap(got));
                    assertRange(model, got, off, what + "read " + off + "+" + len);
                }
            }
            byte[] all = new byte[(int) size];
            img.read(0, ByteBuffer.wrap(all));
            assertRange(model, all, 0, "final read");
        } finally {
            img.close();
        }
        assertNoCorruption(image, ctx, true);
        Qcow2Image ro = Qcow2Image.open(ImageFile.open(image, false), Qcow2OpenOptions.defaults());
        try {
            byte[] all = new byte[(int) size];
            ro.read(0, ByteBuffer.wrap(all));
            assertRange(model, all, 0, "read after reopen");
            assertTrue(!ro.isDirty(), "dirty bit left after a clean close");
        } finally {
            ro.close();
        }
    }

    static Qcow2Image open(Path image, boolean lazy) throws IOException {
        ImageFile f = ImageFile.open(image, true);
        return Qcow2Image.open(f, Qcow2OpenOptions.defaults().withReadOnly(false).withLazyRefcounts(lazy)
                .withCacheBytes(256 << 10));
    }

    static void assertNoCorruption(Path image, String ctx, boolean noLeaks) throws IOException {
        try (ImageFile f = ImageFile.open(image, false)) {
            List<String> msgs = new ArrayList<>();
            CheckResult r = Qcow2Check.check(f, image.toString(), msgs::add);
            if (r.corruptions() != 0 || r.checkErrors() != 0 || !r.completed() || (noLeaks && r.leaks() != 0)) {
                fail(ctx + ": check " + r.corruptions() + " corruptions, " + r.leaks() + " leaks, failure "
                        + r.failure() + ": " + msgs.subList(0, Math.min(20, msgs.size())));
            }
        }
    }

    /** Whole clusters of the range become zeros, as Qcow2Writer#discard documents. */
    static void discardModel(byte[] model, long off, long len, int cs, long size, int version, long backingSize) {
        long first = (off + cs - 1) / cs;
        long end = (off + len) / cs;
        if (off + len == size && size % cs != 0 && end * cs >= off) {
            end++;
        }
        for (long c = first; c < end; c++) {
            long base = c * cs;
            if (version < 3 && base < backingSize) {
                continue;
            }
            java.util.Arrays.fill(model, (int) base, (int) Math.min(base + cs, size), (byte) 0);
        }
    }

    private static long randomOffset(SplittableRandom rnd, long size, int cs) {
        long off = switch (rnd.nextInt(4)) {
            case 0 -> rnd.nextLong(size);                                   // anywhere
            case 1 -> rnd.nextLong((size + cs - 1) / cs) * cs;              // cluster-aligned
            case 2 -> rnd.nextLong(size / 512) * 512;                       // sector-aligned
            default -> Math.max(0, rnd.nextLong((size + cs - 1) / cs) * cs - rnd.nextInt(1, 1024)); // just before
        };
        return Math.min(Math.max(off, 0), size - 1);
    }

    private static long randomLength(SplittableRandom rnd, int cs) {
        return switch (rnd.nextInt(5)) {
            case 0 -> rnd.nextInt(1, 600);
            case 1 -> cs;
            case 2 -> rnd.nextInt(1, 3 * cs);
            case 3 -> (long) cs * rnd.nextInt(1, 5);
            default -> Math.max(1, cs / 32) * (long) rnd.nextInt(1, 70);    // subcluster multiples
        };
    }

    static void assertRange(byte[] model, byte[] got, long off, String what) {
        for (int i = 0; i < got.length; i++) {
            if (model[(int) off + i] != got[i]) {
                byte[] exp = java.util.Arrays.copyOfRange(model, (int) off, (int) off + got.length);
                assertArrayEquals(exp, got, what + ": first difference at guest offset " + (off + i));
            }
        }
    }
}
