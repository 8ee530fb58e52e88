package dev.shear.bench;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** One run of each benchmark method, with its answer checked (RoaringBitmap jmh/src/test). */
class CopyBeforeWriteBenchmarkTest {

    @ParameterizedTest
    @ValueSource(strings = {"LZ4", "ZSTD", "NONE"})
    void everyBenchmarkShouldAnswerAndTheSnapshotShouldHoldTheOldData(String codec) throws Exception {
        CopyBeforeWriteBenchmark bench = new CopyBeforeWriteBenchmark();
        bench.writeSize = 65536;
        bench.codec = codec;
        bench.imageSize = 4 * 65536;
        bench.setUp();
        try {
            byte[] before = new byte[65536];
            bench.writeView().read(0, ByteBuffer.wrap(before));
            assertEquals(65536, bench.copyBeforeWrite());
            byte[] after = new byte[65536];
            bench.writeView().read(0, ByteBuffer.wrap(after));
            assertArrayEquals(before, after, "the snapshot still reads the old data");
            assertEquals(1, bench.writeView().stats().copiedClusters());
            for (int i = 0; i < 4; i++) {
                bench.copyBeforeWrite();                    // wraps: a new snapshot
            }
            assertEquals(1, bench.writeView().stats().copiedClusters());
            assertEquals(65536, bench.plainWrite());
            assertEquals(2 * 65536, bench.withReaderWrite());
            assertEquals(65536, bench.withReaderRead());
            assertEquals(65536, bench.readCopied());
            assertEquals(65536, bench.readUncopied());
            // The setup wrote one zero byte at the start of every cluster of the first half: the view differs
            // from the live image at most there, and reads the rest (copied or not) as the live image.
            long size = bench.readView().size();
            byte[] viaView = new byte[(int) size];
            bench.readView().read(0, ByteBuffer.wrap(viaView));
            ByteBuffer liveBytes = ByteBuffer.allocate((int) size);
            byte[] expected = new byte[(int) size];
            bench.readLive().read(0, liveBytes);
            liveBytes.flip().get(expected);
            for (int c = 0; c < size / 2; c += 65536) {
                assertEquals(0, expected[c]);
                expected[c] = viaView[c];
            }
            assertArrayEquals(expected, viaView);
            assertEquals(size / 2 / 65536, bench.readView().stats().copiedClusters());
        } finally {
            bench.tearDown();
        }
    }
}
