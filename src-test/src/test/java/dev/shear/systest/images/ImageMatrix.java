package dev.shear.systest.images;

import static dev.shear.systest.tools.QemuIo.discard;
import static dev.shear.systest.tools.QemuIo.write;
import static dev.shear.systest.tools.QemuIo.writeFrom;
import static dev.shear.systest.tools.QemuIo.writeZeroes;

import dev.shear.block.ImageFormat;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * The foundation matrix of qcow2 (and raw) images, generated at test time with qemu-img and qemu-io
 * in a directory the test owns (style.md §6 "Let QEMU be the oracle"): every cluster size QEMU
 * supports at the edges (512 B, 4 KiB, 64 KiB, 2 MiB), deflate and zstd compression, zero clusters
 * with and without allocation, extended L2 with partly written and zero subclusters, a
 * qcow2 → qcow2 → raw backing chain with relative names, sizes that are not a cluster multiple, an
 * internal snapshot that was then overwritten, v2, refcount widths 1/8/64, persistent bitmaps, raw.
 *
 * <p>Each case carries a raw reference made by {@code qemu-img convert -O raw}. Images are at most
 * 64 MiB virtual and mostly sparse; the whole matrix builds in a few seconds. Data written from a
 * file (incompressible, so that {@code convert -c} leaves some clusters uncompressed) comes from a
 * fixed-seed generator: the matrix is the same on every run.
 */
public final class ImageMatrix {
    public static final long KIB = 1024;
    public static final long MIB = 1024 * KIB;

    /** Seed of the incompressible data file; fixed so that the matrix is reproducible. */
    private static final long DATA_SEED = 0x5ea7_c0de_2024L;

    private final Path dir;
    private final QemuImg qemuImg;
    private final QemuIo qemuIo;
    private final Path randomData;
    private final List<ImageCase> cases = new ArrayList<>();

    private ImageMatrix(Path dir, QemuImg qemuImg, QemuIo qemuIo) {
        this.dir = dir;
        this.qemuImg = qemuImg;
        this.qemuIo = qemuIo;
        this.randomData = dir.resolve("random.bin");
    }

    /** Builds every case under {@code dir} (one subdirectory each). */
    public static List<ImageCase> build(Path dir) {
        return build(dir, new QemuImg(), new QemuIo());
    }

    public static List<ImageCase> build(Path dir, QemuImg qemuImg, QemuIo qemuIo) {
        ImageMatrix m = new ImageMatrix(dir, qemuImg, qemuIo);
        m.buildAll();
        return List.copyOf(m.cases);
    }

    private void buildAll() {
        writeRandomFile(randomData, 4 * MIB, DATA_SEED);

        // Cluster sizes at QEMU's edges and the default; the same op script scaled to the cluster.
        Path c512 = standard("c512", 512, 4 * MIB);
        standard("c4k", 4 * KIB, 16 * MIB);
        Path c64k = standard("c64k", 64 * KIB, 64 * MIB);
        Path c2m = standard("c2m", 2 * MIB, 64 * MIB);

        // Compression: deflate ("zlib") and zstd, on several cluster sizes; the random-data clusters
        // do not shrink and stay normal clusters.
        compressed("deflate-64k", c64k, false);
        compressed("deflate-512", c512, false, "cluster_size=512");
        compressed("zstd-64k", c64k, false, "compression_type=zstd");
        compressed("zstd-2m", c2m, false, "compression_type=zstd", "cluster_size=2097152");
        compressed("deflate-rewritten", c64k, true);

        zeroes();
        extendedL2("el2-64k", 64 * KIB, 16 * MIB);
        extendedL2("el2-2m", 2 * MIB, 64 * MIB);
        backingChain();
        oddSizes();
        snapshot();
        standard("v2", 64 * KIB, 8 * MIB, "compat=0.10");
        standard("refcount1", 64 * KIB, 8 * MIB, "refcount_bits=1");
        standard("refcount8", 64 * KIB, 8 * MIB, "refcount_bits=8");
        standard("refcount64", 64 * KIB, 8 * MIB, "refcount_bits=64");
        bitmaps();
        empty();
        raw();
    }

    /**
     * The op script of the cluster-size cases, scaled to cluster size {@code cs}: a whole cluster,
     * unaligned partial writes, a write across a cluster boundary, zeroes on an unallocated cluster
     * (ZERO_PLAIN), on an allocated one (ZERO_ALLOC) and with unmap, a discard of a whole and of half a
     * cluster, an unaligned zero write, incompressible data, and the last bytes of the disk.
     */
    static List<String> standardOps(long cs, long size, Path randomData) {
        List<String> ops = new ArrayList<>();
        ops.add(write(0x11, 0, cs));
        ops.add(write(0x22, cs + 123, 1000));
        ops.add(write(0x33, 3 * cs - 100, 300));
        ops.add(write(0x44, size / 2 + 7, 5000));
        ops.add(writeZeroes(4 * cs, cs, false));
        ops.add(write(0x55, 6 * cs, 2 * cs));
        ops.add(writeZeroes(6 * cs, cs, false));
        ops.add(writeZeroes(7 * cs, cs, true));
        ops.add(write(0x66, 10 * cs, 2 * cs));
        ops.add(discard(10 * cs, cs));
        ops.add(discard(11 * cs + cs / 2, cs / 2));
        ops.add(writeZeroes(12 * cs + 512, 512, false));
        ops.add(writeFrom(randomData, 14 * cs + 5, cs + 777));
        ops.add(write(0x77, size - 1000, 1000));
        return ops;
    }

    private Path standard(String name, long clusterSize, long size, String... extraOptions) {
        Path d = caseDir(name);
        Path img = d.resolve(name + ".qcow2");
        List<String> opts = new ArrayList<>(List.of("cluster_size=" + clusterSize));
        opts.addAll(List.of(extraOptions));
        qemuImg.create(img, "qcow2", size, opts.toArray(String[]::new));
        qemuIo.run(img, "qcow2", standardOps(clusterSize, size, randomData));
        add(name, img, ImageFormat.QCOW2, -1, "qcow2 " + String.join(",", opts) + " size=" + size
                + " + standard ops");
        return img;
    }

    private void compressed(String name, Path source, boolean rewrite, String... options) {
        Path d = caseDir(name);
        Path img = d.resolve(name + ".qcow2");
        qemuImg.convert(source, "qcow2", img, "qcow2", true, options);
        String how = "convert -c -O qcow2 " + String.join(",", options) + " of " + source.getFileName();
        if (rewrite) {
            // Partial writes into compressed clusters: QEMU decompresses and writes a normal cluster.
            long cs = 64 * KIB;
            qemuIo.run(img, "qcow2", List.of(
                    write(0x91, 100, 50),
                    write(0x92, 3 * cs - 10, 20),
                    writeZeroes(6 * cs + 512, 1024, false),
                    discard(cs, cs)));
            how += " + writes into compressed clusters";
        }
        add(name, img, ImageFormat.QCOW2, -1, how);
    }

    /** Zero clusters: ZERO_PLAIN (unallocated and unmapped), ZERO_ALLOC, partial zeroes (stay data). */
    private void zeroes() {
        String name = "zeroes";
        long cs = 64 * KIB;
        Path img = caseDir(name).resolve(name + ".qcow2");
        qemuImg.create(img, "qcow2", 8 * MIB);
        qemuIo.run(img, "qcow2", List.of(
                write(0xa1, 0, 16 * cs),
                writeZeroes(cs, cs, false),             // ZERO_ALLOC
                writeZeroes(2 * cs, 2 * cs, true),      // ZERO_PLAIN, clusters freed
                writeZeroes(5 * cs + 4096, 8192, false),// inside a data cluster: stays data
                writeZeroes(8 * cs - 100, 200, false),  // unaligned, across a boundary
                writeZeroes(20 * cs, 4 * cs, false),    // never allocated: ZERO_PLAIN
                writeZeroes(30 * cs + 512, cs, true),   // unaligned, unallocated
                write(0xa2, 2 * cs + 7, 100)));         // data again inside a zero cluster
        add(name, img, ImageFormat.QCOW2, -1, "qcow2 64k: write -z with and without unmap, allocated or not");
    }

    /** Extended L2: 32 subclusters per cluster; alloc and zero bits, partial subclusters, boundaries. */
    private void extendedL2(String name, long cs, long size) {
        long sc = cs / 32;
        Path img = caseDir(name).resolve(name + ".qcow2");
        qemuImg.create(img, "qcow2", size, "extended_l2=on", "cluster_size=" + cs);
        qemuIo.run(img, "qcow2", List.of(
                write(0x21, sc, sc),                        // one whole subcluster
                write(0x22, 3 * sc + 100, 2 * sc),          // unaligned, across subclusters
                writeZeroes(8 * sc, 4 * sc, false),         // zero subclusters in an allocated cluster
                writeZeroes(cs + 16 * sc, 8 * sc, false),   // zero subclusters in an unallocated cluster
                write(0x23, 2 * cs, cs),
                writeZeroes(2 * cs + 4 * sc, 2 * sc, false),
                writeZeroes(2 * cs + 10 * sc, sc, true),
                discard(2 * cs + 20 * sc, 4 * sc),
                write(0x24, 3 * cs - sc / 2, sc),           // across a cluster boundary, mid-subcluster
                writeFrom(randomData, 5 * cs + 7, 3 * sc),
                write(0x25, size - 3000, 3000)));
        add(name, img, ImageFormat.QCOW2, -1, "qcow2 extended_l2=on cluster_size=" + cs
                + ": partial and zero subclusters");
    }

    /**
     * base.raw (4 MiB) ← mid.qcow2 (6 MiB, 4 KiB clusters, -F raw) ← top.qcow2 (8 MiB, 64 KiB clusters,
     * -F qcow2), backing names relative. Each layer is larger than the one below, so reads past a
     * backing file's end must give zeros; zeroes in upper layers hide data below; a partial write in
     * the top copies the rest of its cluster from the chain.
     */
    private void backingChain() {
        Path d = caseDir("chain");
        Path base = d.resolve("base.raw");
        Path mid = d.resolve("mid.qcow2");
        Path top = d.resolve("top.qcow2");
        qemuImg.create(base, "raw", 4 * MIB);
        qemuIo.run(base, "raw", List.of(
                write(0xb1, 0, MIB),
                write(0xb2, 2 * MIB + 333, 100 * KIB)));
        qemuImg.createOverlay(mid, "base.raw", "raw", 6 * MIB, "cluster_size=4096");
        qemuIo.run(mid, "qcow2", List.of(
                write(0xc1, 512 * KIB, 64 * KIB),
                writeZeroes(128 * KIB, 8 * KIB, false),     // hides base
                write(0xc2, 4 * MIB + 100, 10 * KIB),       // beyond base's end
                discard(256 * KIB, 4 * KIB),
                writeFrom(randomData, 3 * MIB + 1, 5000)));
        qemuImg.createOverlay(top, "mid.qcow2", "qcow2", 8 * MIB);
        qemuIo.run(top, "qcow2", List.of(
                write(0xd1, 700 * KIB + 5, 3000),
                writeZeroes(MIB, 64 * KIB, false),
                write(0xd2, 6 * MIB + 1, 1000),             // beyond mid's end
                writeZeroes(2 * MIB, 64 * KIB, true),       // hides part of base's 0xb2
                write(0xd3, 64 * KIB + 100, 10)));          // COW of the rest from base
        add("chain-mid", mid, ImageFormat.QCOW2, 1, "mid.qcow2 (4k clusters) -> base.raw");
        add("chain", top, ImageFormat.QCOW2, 2, "top.qcow2 -> mid.qcow2 -> base.raw, relative names");
    }

    /** Virtual sizes that are not a multiple of the cluster size. */
    private void oddSizes() {
        long size64 = 10 * MIB + 512;
        Path a = caseDir("odd-64k").resolve("odd-64k.qcow2");
        qemuImg.create(a, "qcow2", size64);
        qemuIo.run(a, "qcow2", List.of(
                write(0x31, 0, 4096),
                write(0x32, size64 - 700, 700),
                write(0x33, size64 - 64 * KIB - 100, 200),
                writeZeroes(size64 - 512, 512, false)));
        add("odd-64k", a, ImageFormat.QCOW2, -1, "qcow2 64k, size 10 MiB + 512");

        long size2m = 1000 * KIB + 512;
        Path b = caseDir("odd-2m").resolve("odd-2m.qcow2");
        qemuImg.create(b, "qcow2", size2m, "cluster_size=2097152");
        qemuIo.run(b, "qcow2", List.of(
                write(0x41, 100, 1000),
                write(0x42, size2m - 512, 512),
                write(0x43, 500 * KIB, 12345)));
        add("odd-2m", b, ImageFormat.QCOW2, -1, "qcow2 2M, size 1000 KiB + 512 (less than one cluster)");

        compressed("deflate-odd", a, false);
    }

    /** snap1 taken, then the same clusters overwritten, zeroed and discarded; snap2 taken later. */
    private void snapshot() {
        String name = "snapshot";
        long cs = 64 * KIB;
        Path d = caseDir(name);
        Path img = d.resolve(name + ".qcow2");
        qemuImg.create(img, "qcow2", 8 * MIB);
        qemuIo.run(img, "qcow2", List.of(
                write(0x51, 0, 2 * cs),
                write(0x52, MIB, cs),
                write(0x56, 3 * MIB, cs)));
        qemuImg.snapshotCreate(img, "snap1");
        qemuIo.run(img, "qcow2", List.of(
                write(0x53, 0, cs),                 // overwrite: COW away from the snapshot
                write(0x54, cs + 10, 10),
                writeZeroes(MIB, cs, false),
                discard(3 * MIB, cs),
                write(0x55, 2 * MIB, 4096)));
        qemuImg.snapshotCreate(img, "snap2");
        qemuIo.run(img, "qcow2", List.of(write(0x57, 4 * MIB, 4096)));
        Path ref = d.resolve(name + ".raw");
        qemuImg.convertToRaw(img, "qcow2", ref);
        Path snapRef = d.resolve(name + ".snap1.raw");
        qemuImg.convertSnapshotToRaw(img, "snap1", snapRef);
        cases.add(new ImageCase(name, img, ImageFormat.QCOW2, ref, "snap1", snapRef, -1,
                "qcow2 64k: snap1, overwrite, snap2, write"));
    }

    /** Two persistent bitmaps (64 KiB enabled, 1 MiB disabled), data written after they exist. */
    private void bitmaps() {
        String name = "bitmaps";
        Path img = caseDir(name).resolve(name + ".qcow2");
        qemuImg.create(img, "qcow2", 8 * MIB);
        qemuImg.bitmapAdd(img, "b1", 64 * KIB);
        qemuImg.bitmapAdd(img, "b2", MIB);
        qemuImg.bitmapDisable(img, "b2");
        qemuIo.run(img, "qcow2", List.of(
                write(0x61, 0, 100 * KIB),
                write(0x62, 3 * MIB + 5, 70 * KIB)));
        add(name, img, ImageFormat.QCOW2, -1, "qcow2 64k, bitmaps b1 (64k, enabled) and b2 (1M, disabled)");
    }

    private void empty() {
        Path img = caseDir("empty").resolve("empty.qcow2");
        qemuImg.create(img, "qcow2", MIB);
        add("empty", img, ImageFormat.QCOW2, -1, "qcow2 1 MiB, nothing written");
    }

    private void raw() {
        Path img = caseDir("raw").resolve("raw.img");
        qemuImg.create(img, "raw", 4 * MIB);
        qemuIo.run(img, "raw", List.of(
                write(0x71, 0, 64 * KIB),
                write(0x72, MIB + 3, 5000),
                writeFrom(randomData, 2 * MIB - 100, 300),
                write(0x73, 4 * MIB - 1, 1)));
        add("raw", img, ImageFormat.RAW, 0, "raw 4 MiB, sparse");
    }

    private void add(String name, Path img, ImageFormat format, int rawDepth, String description) {
        Path ref = img.resolveSibling(name + ".ref.raw");
        qemuImg.convertToRaw(img, format.qemuName(), ref);
        cases.add(new ImageCase(name, img, format, ref, null, null, rawDepth, description));
    }

    private Path caseDir(String name) {
        try {
            return Files.createDirectories(dir.resolve(name));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Writes {@code length} bytes from {@code new SplittableRandom(seed)} to {@code file}. */
    public static void writeRandomFile(Path file, long length, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        byte[] b = new byte[(int) length];
        r.nextBytes(b);
        try {
            Files.write(file, b);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
