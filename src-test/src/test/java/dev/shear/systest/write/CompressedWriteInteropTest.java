package dev.shear.systest.write;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.ImageFile;
import dev.shear.qcow2.Qcow2CreateOptions;
import dev.shear.qcow2.Qcow2Creator;
import dev.shear.qcow2.Qcow2Image;
import dev.shear.qcow2.Qcow2OpenOptions;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.RequiresTools;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Compressed clusters written by Shear ({@link Qcow2Image#writeCompressed}) read back by QEMU: every
 * cluster size from 512 B to 2 MiB, both compression types, a last partial cluster, incompressible
 * clusters (stored normal), rewrites of compressed and normal clusters; {@code qemu-img compare} against
 * the raw model and {@code qemu-img check} clean (qcow2-format.md §6.4, §7).
 */
@RequiresTools({"qemu-img"})
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class CompressedWriteInteropTest {
    @TempDir
    Path dir;

    private final QemuImg qemuImg = new QemuImg();

    @ParameterizedTest
    @CsvSource({"512,zlib", "512,zstd", "4096,zlib", "4096,zstd", "65536,zlib", "65536,zstd", "2097152,zlib",
        "2097152,zstd"})
    void shearCompressedClustersShouldReadBackInQemu(int clusterSize, String compression) throws IOException {
        long seed = Long.getLong("shear.seed", System.nanoTime());
        String ctx = clusterSize + " " + compression + " seed=" + seed;
        SplittableRandom r = new SplittableRandom(seed);
        int clusters = clusterSize >= (2 << 20) ? 5 : 40;
        long size = (long) clusterSize * clusters - (clusterSize > 512 ? 1024 : 0);   // last cluster partial
        Path img = dir.resolve("c.qcow2");
        Qcow2Creator.create(img, Qcow2CreateOptions.parse(size, Map.of("cluster_size", String.valueOf(clusterSize),
                "compression_type", compression), null, null));
        byte[] model = new byte[(int) size];
        int compressed = 0;
        try (Qcow2Image d = Qcow2Image.open(ImageFile.open(img, true),
                Qcow2OpenOptions.defaults().withReadOnly(false))) {
            for (int round = 0; round < 2; round++) {
                for (int c = 0; c < clusters; c++) {
                    long off = (long) c * clusterSize;
                    int n = (int) Math.min(clusterSize, size - off);
                    int kind = r.nextInt(10);
                    byte[] data = new byte[n];
                    if (kind == 0) {
                        continue;   // left as it is (unallocated in round 0)
                    } else if (kind == 1) {
                        r.nextBytes(data);   // incompressible: stored as a normal cluster
                    } else if (kind == 2) {
                        d.write(off, ByteBuffer.wrap(fillText(r, data)), 0);   // a normal write in between
                        System.arraycopy(data, 0, model, (int) off, n);
                        continue;
                    } else {
                        fillText(r, data);
                    }
                    // the last cluster goes in once as its in-disk bytes, once padded to a whole cluster
                    ByteBuffer src = n < clusterSize && round == 1
                            ? ByteBuffer.allocate(clusterSize).put(data).clear() : ByteBuffer.wrap(data);
                    if (d.writeCompressed(off, src) && round == 1) {
                        compressed++;
                    }
                    System.arraycopy(data, 0, model, (int) off, n);
                }
                d.flush();
            }
        }
        Path raw = dir.resolve("model.raw");
        Files.write(raw, model);
        QemuImg.CheckResult check = qemuImg.check(img, "qcow2");
        assertEquals(QemuImg.CHECK_CLEAN, check.exitCode(), ctx + ": " + check.raw().stdout() + check.raw().stderr());
        assertTrue(compressed > 0 && check.count("compressed-clusters") >= compressed,
                ctx + ": " + compressed + " written, qemu-img counts " + check.count("compressed-clusters"));
        assertTrue(qemuImg.compare(img, "qcow2", raw, "raw"), ctx);
    }

    /** Text-like bytes: compress well with both deflate and zstd. */
    private static byte[] fillText(SplittableRandom r, byte[] b) {
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) ('a' + r.nextInt(8));
        }
        return b;
    }
}
