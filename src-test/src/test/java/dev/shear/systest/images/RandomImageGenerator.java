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
 * Seeded random qcow2 images: random option sets (cluster size, compat, extended L2, refcount width,
 * compression by {@code qemu-img convert -c}, a raw or qcow2 backing file) and random qemu-io op lists
 * (pattern writes, incompressible writes, zeroes with and without unmap, discards; unaligned, and
 * biased towards cluster and subcluster boundaries).
 *
 * <p>Seeds: {@code -Dshear.seed=N} (decimal or 0x-hex) fixes the master seed; otherwise one is drawn
 * per JVM and printed. Each case gets its own seed split from the master, and its
 * {@link RandomImageSpec#summary()} says how to reproduce it. {@code -Dshear.randomImages=N} sets the
 * number of cases (default {@value #DEFAULT_COUNT}, so CI stays fast).
 */
public final class RandomImageGenerator {
    public static final String SEED_PROPERTY = "shear.seed";
    public static final String COUNT_PROPERTY = "shear.randomImages";
    public static final int DEFAULT_COUNT = 8;

    /** Virtual sizes stay small: the images are sparse, but the read test reads every byte. */
    static final long MAX_SIZE = 24 * ImageMatrix.MIB;
    private static final long[] CLUSTER_SIZES = {512, 4096, 16384, 65536, 65536, 65536, 131072, 2097152};
    private static final int[] REFCOUNT_BITS = {16, 16, 16, 1, 2, 4, 8, 32, 64};

    private static final long MASTER_SEED = initialSeed();

    private RandomImageGenerator() {
    }

    /** The run's master seed: -Dshear.seed, or one drawn once per JVM. */
    public static long masterSeed() {
        return MASTER_SEED;
    }

    /** How many random cases to run: -Dshear.randomImages, default {@value #DEFAULT_COUNT}. */
    public static int count() {
        return Integer.getInteger(COUNT_PROPERTY, DEFAULT_COUNT);
    }

    private static long initialSeed() {
        String s = System.getProperty(SEED_PROPERTY);
        long seed;
        if (s != null && !s.isBlank()) {
            String t = s.strip().toLowerCase(java.util.Locale.ROOT);
            seed = t.startsWith("0x") ? Long.parseUnsignedLong(t.substring(2), 16) : Long.parseLong(t);
        } else {
            seed = new SplittableRandom().nextLong();
        }
        System.out.printf("RandomImageGenerator: master seed 0x%x (reproduce with -D%s=0x%x)%n", seed,
                SEED_PROPERTY, seed);
        return seed;
    }

    /** The run's specs: {@link #count()} cases from {@link #masterSeed()}. */
    public static List<RandomImageSpec> specs() {
        return specs(masterSeed(), count());
    }

    /** {@code count} specs from {@code masterSeed}; the same arguments always give the same specs. */
    public static List<RandomImageSpec> specs(long masterSeed, int count) {
        SplittableRandom master = new SplittableRandom(masterSeed);
        List<RandomImageSpec> specs = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            long seed = master.nextLong();
            specs.add(spec(masterSeed, i, seed));
        }
        return specs;
    }

    static RandomImageSpec spec(long masterSeed, int index, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        long cs = CLUSTER_SIZES[r.nextInt(CLUSTER_SIZES.length)];
        String compat = r.nextInt(6) == 0 ? "0.10" : "1.1";
        boolean v3 = compat.equals("1.1");
        boolean extendedL2 = v3 && cs >= 16384 && r.nextInt(3) == 0;
        int refcountBits = v3 ? REFCOUNT_BITS[r.nextInt(REFCOUNT_BITS.length)] : 16;
        String compression = null;
        int c = r.nextInt(10);
        // Compressed clusters share host clusters: 1- and 2-bit refcounts cannot count the sharing.
        if (c < 2 && refcountBits >= 4) {
            compression = "zlib";
        } else if (c < 4 && v3 && refcountBits >= 4) {
            compression = "zstd";
        }
        long size = randomSize(r, cs);
        String backingFormat = null;
        long backingSize = 0;
        List<String> backingOps = List.of();
        if (r.nextInt(3) == 0) {
            backingFormat = r.nextBoolean() ? "raw" : "qcow2";
            backingSize = randomSize(r, 65536);
            backingOps = ops(r, backingSize, 65536, false, 1 + r.nextInt(8));
        }
        List<String> ops = ops(r, size, cs, extendedL2, 4 + r.nextInt(20));
        List<String> postOps = compression != null && r.nextBoolean()
                ? ops(r, size, cs, extendedL2, 1 + r.nextInt(5))
                : List.of();
        return new RandomImageSpec(masterSeed, index, seed, cs, compat, extendedL2, refcountBits, compression,
                size, backingFormat, backingSize, backingOps, ops, postOps);
    }

    /** A multiple of 512 up to {@link #MAX_SIZE}; a third of the time not a multiple of the cluster. */
    private static long randomSize(SplittableRandom r, long cs) {
        long clusters = 1 + r.nextLong(Math.max(2, MAX_SIZE / cs));
        long size = Math.min(MAX_SIZE, Math.max(64 * 1024, clusters * cs));
        if (r.nextInt(3) == 0) {
            size = Math.max(512, size - 512L * (1 + r.nextInt(7)));
        }
        return size;
    }

    /** Random qemu-io commands within [0, size); offsets often near cluster/subcluster boundaries. */
    private static List<String> ops(SplittableRandom r, long size, long cs, boolean extendedL2, int n) {
        long unit = extendedL2 ? cs / 32 : cs;
        List<String> ops = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            long off;
            if (r.nextBoolean()) {
                long boundary = (r.nextBoolean() ? unit : cs) * r.nextLong(Math.max(1, size / unit));
                off = boundary + r.nextLong(-600, 601);
            } else {
                off = r.nextLong(size);
            }
            off = Math.max(0, Math.min(size - 1, off));
            long len = switch (r.nextInt(5)) {
                case 0 -> unit;
                case 1 -> cs;
                case 2 -> 1 + r.nextLong(600);
                default -> 1 + r.nextLong(Math.min(3 * cs, 4 * ImageMatrix.MIB));
            };
            if (r.nextInt(4) == 0) {          // aligned start: whole-cluster fast paths
                off = off / unit * unit;
            }
            len = Math.max(1, Math.min(len, size - off));
            int kind = r.nextInt(20);
            if (kind < 8) {
                ops.add(write(1 + r.nextInt(255), off, len));
            } else if (kind < 11) {
                ops.add(writeFrom(Path.of(RANDOM_FILE_TOKEN), off, Math.min(len, RANDOM_FILE_SIZE)));
            } else if (kind < 14) {
                ops.add(writeZeroes(off, len, false));
            } else if (kind < 16) {
                ops.add(writeZeroes(off, len, true));
            } else {
                ops.add(discard(off, len));
            }
        }
        return ops;
    }

    /** Placeholder for the per-case random data file in {@code write -s} commands. */
    private static final String RANDOM_FILE_TOKEN = "@RANDOM@";
    private static final long RANDOM_FILE_SIZE = 4 * ImageMatrix.MIB;

    /** Builds {@code spec} under {@code dir} and returns it with its qemu-img reference. */
    public static ImageCase build(RandomImageSpec spec, Path dir) {
        return build(spec, dir, new QemuImg(), new QemuIo());
    }

    public static ImageCase build(RandomImageSpec spec, Path dir, QemuImg qemuImg, QemuIo qemuIo) {
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        Path data = dir.resolve("random.bin");
        ImageMatrix.writeRandomFile(data, RANDOM_FILE_SIZE, spec.seed());
        Path img = dir.resolve("image.qcow2");
        int rawDepth = -1;
        if (spec.backingFormat() != null) {
            String ext = spec.backingFormat().equals("raw") ? "raw" : "qcow2";
            Path base = dir.resolve("base." + ext);
            qemuImg.create(base, spec.backingFormat(), spec.backingSize());
            qemuIo.run(base, spec.backingFormat(), resolve(spec.backingOps(), data));
            qemuImg.createOverlay(img, base.getFileName().toString(), spec.backingFormat(), spec.size(),
                    spec.createOptions().toArray(String[]::new));
            rawDepth = spec.backingFormat().equals("raw") ? 1 : -1;
        } else {
            qemuImg.create(img, "qcow2", spec.size(), spec.createOptions().toArray(String[]::new));
        }
        qemuIo.run(img, "qcow2", resolve(spec.ops(), data));
        Path result = img;
        if (spec.compression() != null) {
            // Flattens the chain: the compressed image stands alone.
            result = dir.resolve("compressed.qcow2");
            List<String> opts = new ArrayList<>(spec.createOptions());
            opts.add("compression_type=" + spec.compression());
            qemuImg.convert(img, "qcow2", result, "qcow2", true, opts.toArray(String[]::new));
            qemuIo.run(result, "qcow2", resolve(spec.postOps(), data));
            rawDepth = -1;
        }
        Path ref = dir.resolve("reference.raw");
        qemuImg.convertToRaw(result, "qcow2", ref);
        return new ImageCase(spec.toString(), result, ImageFormat.QCOW2, ref, null, null, rawDepth, spec.recipe());
    }

    private static List<String> resolve(List<String> ops, Path data) {
        return ops.stream().map(o -> o.replace(RANDOM_FILE_TOKEN, data.toString())).toList();
    }
}
