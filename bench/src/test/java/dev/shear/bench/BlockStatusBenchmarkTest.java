package dev.shear.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.bench.fixtures.BenchImages;
import dev.shear.block.Extent;
import dev.shear.block.ExtentCollector;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Sanity: the count each benchmark returns is the number of extents the engine emits, and those
 * extents, merged, are exactly QEMU's {@code qemu-img map} (and, for the sparse image, the layout
 * {@link BenchImages#SPARSE_WRITE_OFFSETS} implies).
 */
class BlockStatusBenchmarkTest {
    private static final Pattern MAP_ENTRY = Pattern.compile(
            "\"start\": (\\d+), \"length\": (\\d+), \"depth\": \\d+, \"present\": \\w+, \"zero\": (\\w+), "
                    + "\"data\": (\\w+)");

    @ParameterizedTest(name = "clusterBits={0}")
    @ValueSource(ints = {16, 21})
    void sparse1TiB(int clusterBits) throws Exception {
        QemuTools.assumeAvailable();
        BlockStatusBenchmark.Sparse s = new BlockStatusBenchmark.Sparse();
        s.clusterBits = clusterBits;
        s.setUp();
        try {
            long count = new BlockStatusBenchmark().sparse1TiB(s);
            List<Extent> merged = mergedAndCount(s, count);

            // Data where QEMU wrote (whole clusters: a 64 KiB write allocates its 2 MiB cluster), holes
            // between: first and last write at the disk's ends, so 6 data + 5 holes.
            long cluster = 1L << clusterBits;
            long[] writes = BenchImages.SPARSE_WRITE_OFFSETS;
            assertEquals(2 * writes.length - 1, merged.size(), "merged extents " + merged);
            for (int i = 0; i < writes.length; i++) {
                Extent data = merged.get(2 * i);
                long start = writes[i] & -cluster;
                long end = Math.max(start + cluster, writes[i] + BenchImages.SPARSE_WRITE_BYTES);
                assertTrue(data.isData() && data.offset() == start && data.end() == end, "extent " + data);
                if (i > 0) {
                    assertTrue(merged.get(2 * i - 1).isHole(), "extent " + merged.get(2 * i - 1));
                }
            }
            assertQemuMap(s.path, merged);
        } finally {
            s.tearDown();
        }
    }

    @ParameterizedTest(name = "clusterBits={0}")
    @ValueSource(ints = {16, 21})
    void dataImage(int clusterBits) throws Exception {
        QemuTools.assumeAvailable();
        BlockStatusBenchmark.Data s = new BlockStatusBenchmark.Data();
        s.clusterBits = clusterBits;
        s.imageMiB = 16;
        s.setUp();
        try {
            long count = new BlockStatusBenchmark().dataImage(s);
            List<Extent> merged = mergedAndCount(s, count);
            for (Extent e : merged) {
                assertTrue(e.isData() && e.depth() == 0, "extent " + e);
            }
            assertEquals(16L << 20, merged.get(merged.size() - 1).end(), "covers the disk");
            assertQemuMap(s.path, merged);
        } finally {
            s.tearDown();
        }
    }

    /** Walks again into a collector, checks the count, returns the merged extents. */
    private static List<Extent> mergedAndCount(BlockStatusBenchmark.ImageState s, long count) throws Exception {
        long size = s.image.size();
        ExtentCollector collector = new ExtentCollector(0, size, Integer.MAX_VALUE);
        long[] seen = {0};
        s.image.blockStatus(0, size, e -> {
            seen[0]++;
            return collector.accept(e);
        });
        assertEquals(seen[0], count, "extents the benchmark counted");
        List<Extent> merged = collector.extents();
        assertTrue(count >= merged.size(), "count " + count + " < merged " + merged.size());
        assertEquals(0, merged.get(0).offset(), "starts at 0");
        assertEquals(size, merged.get(merged.size() - 1).end(), "covers the disk");
        return merged;
    }

    /** Same extents as qemu-img map: start, length and data/zero flags. */
    private static void assertQemuMap(Path image, List<Extent> merged) throws Exception {
        String json = BenchImages.qemuMap(image);
        List<String> qemu = new ArrayList<>();
        Matcher m = MAP_ENTRY.matcher(json);
        while (m.find()) {
            qemu.add(m.group(1) + "+" + m.group(2) + " zero=" + m.group(3) + " data=" + m.group(4));
        }
        List<String> ours = new ArrayList<>();
        for (Extent e : merged) {
            ours.add(e.offset() + "+" + e.length() + " zero=" + e.isZero() + " data=" + e.isData());
        }
        assertEquals(qemu, ours, "qemu-img map --output=json:\n" + json);
    }
}
