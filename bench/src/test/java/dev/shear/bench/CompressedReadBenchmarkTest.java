package dev.shear.bench;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.bench.fixtures.BenchImages;
import dev.shear.qcow2.ClusterMapping;
import dev.shear.qcow2.compress.CompressionType;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Sanity: one whole compressed cluster decompresses to the raw twin's bytes, with the codec asked for. */
class CompressedReadBenchmarkTest {

    @ParameterizedTest(name = "codec={0}")
    @ValueSource(strings = {"deflate", "zstd", "uncompressed"})
    void compressedReadEqualsRaw(String codec) throws Exception {
        QemuTools.assumeAvailable();
        CompressedReadBenchmark b = new CompressedReadBenchmark();
        b.codec = codec;
        b.imageMiB = 4;
        b.setUp();
        try {
            int clusterSize = 1 << CompressedReadBenchmark.CLUSTER_BITS;
            long offset = b.offsets[0];
            ByteBuffer got = b.compressedRead();
            assertEquals(clusterSize, got.position(), "bytes read");
            byte[] a = new byte[clusterSize];
            got.flip().get(a);
            assertArrayEquals(BenchImages.readFile(b.rawPath, offset, clusterSize), a,
                    "cluster at 0x" + Long.toHexString(offset));
            ClusterMapping m = b.qcow2.map(offset, clusterSize);
            assertEquals(codec.equals("zstd") ? CompressionType.ZSTD : CompressionType.DEFLATE,
                    CompressionType.fromHeader(b.qcow2.header().compressionType()), "header compression_type");
            if (codec.equals("uncompressed")) {
                assertInstanceOf(ClusterMapping.Data.class, m);
            } else {
                ClusterMapping.Compressed c = assertInstanceOf(ClusterMapping.Compressed.class, m);
                assertTrue(c.compressedSize() < clusterSize, "csize " + c.compressedSize());
                // The mix is meant to compress about 2.5:1: the file must be well below the data size.
                assertTrue(Files.size(b.qcow2Path) < Files.size(b.rawPath) * 3 / 4,
                        "qcow2 " + Files.size(b.qcow2Path) + " bytes for " + Files.size(b.rawPath) + " raw");
            }
        } finally {
            b.tearDown();
        }
    }
}
