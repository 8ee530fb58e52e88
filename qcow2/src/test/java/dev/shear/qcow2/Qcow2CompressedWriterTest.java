package dev.shear.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.ImageFile;
import dev.shear.qcow2.compress.CompressionType;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Compressed cluster writes: byte-granular packing, refcounts per touched cluster, frees (§6.4, §7). */
class Qcow2CompressedWriterTest {
    private static final long SEED = Long.getLong("test.seed", 20261123L);

    @TempDir
    Path dir;

    private Qcow2Image openRw(Path p) throws IOException {
        return Qcow2Image.open(ImageFile.open(p, true), Qcow2OpenOptions.defaults().withReadOnly(false));
    }

    private Qcow2Image openRo(Path p) throws IOException {
        return Qcow2Image.open(ImageFile.open(p, false), Qcow2OpenOptions.defaults());
    }

    /** Text-like bytes that compress to roughly a third. */
    static byte[] compressible(SplittableRandom r, int n) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) ('a' + r.nextInt(6));
        }
        return b;
    }

    private Path create(int clusterSize, String compression, long size) throws IOException {
        Path p = dir.resolve("c-" + clusterSize + "-" + compression + ".qcow2");
        Qcow2Creator.create(p, Qcow2CreateOptions.parse(size, Map.of("cluster_size", String.valueOf(clusterSize),
                "compression_type", compression), null, null));
        return p;
    }

    private static void assertClean(Path p) throws IOException {
        try (ImageFile f = ImageFile.open(p, false)) {
            CheckResult r = Qcow2Check.check(f, p.toString());
            assertTrue(r.isClean(), r.toString());
        }
    }

    @ParameterizedTest
    @CsvSource({"512,zlib", "512,zstd", "4096,zlib", "65536,zlib", "65536,zstd", "2097152,zstd",
        "2097152,zlib"})
    void compressedClustersShouldReadBackAndCheckClean(int clusterSize, String compression) throws IOException {
        SplittableRandom r = new SplittableRandom(SEED);
        int clusters = 7;
        long size = (long) clusterSize * clusters - 512 * (clusterSize > 512 ? 1 : 0);
        Path p = create(clusterSize, compression, size);
        byte[] model = new byte[(int) size];
        try (Qcow2Image img = openRw(p)) {
            for (int c = 0; c < clusters; c++) {
                long off = (long) c * clusterSize;
                int n = (int) Math.min(clusterSize, size - off);
                byte[] data = c == 3 ? randomBytes(r, n) : compressible(r, n);
                boolean stored = img.writeCompressed(off, ByteBuffer.wrap(data));
                assertEquals(c != 3, stored, "cluster " + c + " (seed " + SEED + ")");
                System.arraycopy(data, 0, model, (int) off, n);
            }
            assertArrayEquals(model, read(img, size));
        }
        assertClean(p);
        try (Qcow2Image img = openRo(p)) {
            assertArrayEquals(model, read(img, size));
            assertEquals(CompressionType.fromHeader(img.header().compressionType()).qemuName(), compression);
        }
    }

    @Test
    void overwritingCompressedClustersShouldFreeTheirRanges() throws IOException {
        SplittableRandom r = new SplittableRandom(SEED);
        int cs = 65536;
        long size = 16L * cs;
        Path p = create(cs, "zlib", size);
        byte[] model = new byte[(int) size];
        try (Qcow2Image img = openRw(p)) {
            for (int round = 0; round < 3; round++) {
                for (int c = 0; c < 16; c++) {
                    byte[] data = compressible(r, cs);
                    img.writeCompressed((long) c * cs, ByteBuffer.wrap(data));
                    System.arraycopy(data, 0, model, c * cs, cs);
                }
                img.flush();
            }
            byte[] part = randomBytes(r, 1000);
            img.write(5 * cs + 100, ByteBuffer.wrap(part), 0);   // compressed -> normal (COW)
            System.arraycopy(part, 0, model, 5 * cs + 100, part.length);
            img.discard(7L * cs, cs, 0);
            java.util.Arrays.fill(model, 7 * cs, 8 * cs, (byte) 0);
            assertArrayEquals(model, read(img, size));
        }
        assertClean(p);
        try (Qcow2Image img = openRo(p)) {
            assertArrayEquals(model, read(img, size));
        }
    }

    @Test
    void compressedDataShouldBePackedByteGranular() throws IOException {
        SplittableRandom r = new SplittableRandom(SEED);
        int cs = 65536;
        Path p = create(cs, "zstd", 4L * cs);
        try (Qcow2Image img = openRw(p)) {
            img.writeCompressed(0, ByteBuffer.wrap(compressible(r, cs)));
            img.writeCompressed(cs, ByteBuffer.wrap(compressible(r, cs)));
            ClusterMapping a = img.map(0, cs);
            ClusterMapping b = img.map(cs, cs);
            assertTrue(a instanceof ClusterMapping.Compressed, a.toString());
            long aStart = ((ClusterMapping.Compressed) a).hostOffset();
            long bStart = ((ClusterMapping.Compressed) b).hostOffset();
            assertNotEquals(0, bStart & 511, "QEMU's free byte offset: not sector-aligned (" + a + ", " + b + ")");
            assertEquals(aStart >>> 16, bStart >>> 16, "second cluster packed into the same host cluster");
        }
        assertClean(p);
    }

    private static byte[] randomBytes(SplittableRandom r, int n) {
        byte[] b = new byte[n];
        r.nextBytes(b);
        return b;
    }

    private static byte[] read(Qcow2Image img, long size) throws IOException {
        ByteBuffer b = ByteBuffer.allocate((int) size);
        img.read(0, b);
        return b.array();
    }
}
