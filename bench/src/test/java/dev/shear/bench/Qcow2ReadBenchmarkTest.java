package dev.shear.bench;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.bench.fixtures.BenchImages;
import java.nio.ByteBuffer;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Sanity: each cell reads requestSize bytes, and qcow2 and raw return the same bytes for the same offset. */
class Qcow2ReadBenchmarkTest {

    @ParameterizedTest(name = "clusterBits={0} requestSize={1} pattern={2}")
    @CsvSource({
        "16, 4096, sequential", "16, 4096, random",
        "16, 65536, sequential", "16, 65536, random",
        "16, 2097152, sequential", "16, 2097152, random",
        "21, 4096, sequential", "21, 4096, random",
        "21, 65536, sequential", "21, 65536, random",
        "21, 2097152, sequential", "21, 2097152, random",
    })
    void qcow2ReadEqualsRawRead(int clusterBits, int requestSize, String pattern) throws Exception {
        QemuTools.assumeAvailable();
        Qcow2ReadBenchmark b = new Qcow2ReadBenchmark();
        b.clusterBits = clusterBits;
        b.requestSize = requestSize;
        b.pattern = pattern;
        b.imageMiB = 16;
        b.setUp();
        try {
            // The benchmark's first offset of a later cycle: not always 0, so the mapping is exercised.
            b.cursor = Math.min(3, b.offsets.length - 1);
            long offset = b.offsets[b.cursor];
            ByteBuffer q = b.qcow2Read();
            assertEquals(requestSize, q.position(), "bytes read through qcow2");
            b.cursor = Math.min(3, b.offsets.length - 1);
            ByteBuffer r = b.rawRead();
            assertEquals(requestSize, r.position(), "bytes read through raw");
            byte[] expected = BenchImages.readFile(b.rawPath, offset, requestSize);
            assertArrayEquals(expected, bytes(r), "raw read at 0x" + Long.toHexString(offset));
            assertArrayEquals(expected, bytes(q), "qcow2 read at 0x" + Long.toHexString(offset));
            assertTrue(b.qcow2.size() == b.raw.size() && b.raw.size() == 16L << 20, "twin sizes");
            if (pattern.equals("sequential")) {
                assertEquals((16L << 20) / requestSize, b.offsets.length, "sequential visits every request");
            }
        } finally {
            b.tearDown();
        }
    }

    private static byte[] bytes(ByteBuffer filled) {
        byte[] a = new byte[filled.position()];
        filled.duplicate().flip().get(a);
        return a;
    }
}
