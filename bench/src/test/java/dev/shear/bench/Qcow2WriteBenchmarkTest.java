package dev.shear.bench;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.junit.jupiter.api.Test;

/** Runs each benchmark method once and checks its answer (RoaringBitmap jmh/src/test). */
class Qcow2WriteBenchmarkTest {
    @Test
    void eachBenchmarkShouldWriteItsRequest() throws IOException {
        Qcow2WriteBenchmark bench = new Qcow2WriteBenchmark();
        bench.requestSize = 4096;
        bench.clusterSize = 65536;
        bench.setUpTrial();
        try {
            bench.setUpIteration();
            try {
                assertEquals(4096, bench.allocatingRandomWrite());
                assertEquals(4096, bench.overwriteRandomWrite());
                assertEquals(1 << 20, bench.sequentialWrite1M());
                byte[] first = new byte[4096];
                bench.freshImage().read(0, ByteBuffer.wrap(first));   // offset 0 got the first fresh write and 1 MiB
                byte[] expected = new byte[4096];
                ByteBuffer.wrap(expected);
                new java.util.SplittableRandom(42).nextBytes(expected);
                assertArrayEquals(expected, first);
            } finally {
                bench.tearDownIteration();
            }
        } finally {
            bench.tearDownTrial();
        }
    }
}
