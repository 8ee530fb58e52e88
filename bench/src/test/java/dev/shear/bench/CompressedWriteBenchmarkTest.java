package dev.shear.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.Extent;
import dev.shear.block.ExtentCollector;
import java.io.IOException;
import java.nio.ByteBuffer;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Runs the benchmark method and checks that it stored compressed clusters that read back equal. */
class CompressedWriteBenchmarkTest {
    @ParameterizedTest
    @ValueSource(strings = {"deflate", "zstd"})
    void eachOpShouldStoreOneCompressedCluster(String codec) throws IOException {
        CompressedWriteBenchmark bench = new CompressedWriteBenchmark();
        bench.codec = codec;
        bench.setUpTrial();
        try {
            bench.setUpIteration();
            try {
                for (int i = 0; i < 3; i++) {
                    assertTrue(bench.writeCompressedCluster(), "cluster " + i + " stored compressed");
                }
                for (int i = 0; i < 3; i++) {
                    ByteBuffer back = ByteBuffer.allocate(CompressedWriteBenchmark.CLUSTER_SIZE);
                    bench.image().read((long) i * CompressedWriteBenchmark.CLUSTER_SIZE, back);
                    assertEquals(bench.inputCluster(i), back.flip(), "cluster " + i);
                }
                ExtentCollector map = new ExtentCollector(0, 3L * CompressedWriteBenchmark.CLUSTER_SIZE, 16);
                bench.image().blockStatus(0, 3L * CompressedWriteBenchmark.CLUSTER_SIZE, map);
                for (Extent e : map.extents()) {
                    assertTrue((e.flags() & Extent.COMPRESSED) != 0, "extent " + e + " compressed");
                }
            } finally {
                bench.tearDownIteration();
            }
        } finally {
            bench.tearDownTrial();
        }
    }
}
