package dev.shear.qcow2.compress;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.github.luben.zstd.Zstd;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.zip.DataFormatException;
import java.util.zip.Deflater;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class ClusterCodecTest {
    private static final long SEED = Long.getLong("shear.seed", 0x5eed);

    static byte[] compressible(int n) {
        SplittableRandom r = new SplittableRandom(SEED + n);
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i % 64 < 8 ? r.nextInt(256) : i >> 9);
        }
        return b;
    }

    static byte[] deflate(byte[] in) {
        Deflater d = new Deflater(Deflater.DEFAULT_COMPRESSION, true);
        d.setInput(in);
        d.finish();
        byte[] out = new byte[in.length * 2 + 64];
        int n = d.deflate(out);
        d.end();
        return Arrays.copyOf(out, n);
    }

    static byte[] withTrailer(byte[] z, int garbage) {
        byte[] out = Arrays.copyOf(z, z.length + garbage);
        Arrays.fill(out, z.length, out.length, (byte) 0x5a);
        return out;
    }

    static byte[] decode(ClusterCodec codec, byte[] src, int clusterSize) throws DataFormatException {
        ByteBuffer dst = ByteBuffer.allocate(clusterSize);
        codec.decompress(ByteBuffer.wrap(src), dst);
        assertEquals(clusterSize, dst.position());
        return dst.array();
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096, 65536, 2 << 20})
    void deflateClusterWithTrailingGarbageShouldInflateExactlyOneCluster(int clusterSize) throws Exception {
        byte[] data = compressible(clusterSize);
        byte[] z = withTrailer(deflate(data), 511);
        assertArrayEquals(data, decode(DeflateClusterCodec.instance(), z, clusterSize));
    }

    @Test
    void deflateStreamEndingExactlyAtInputEndShouldInflate() throws Exception {
        byte[] data = compressible(4096);
        assertArrayEquals(data, decode(DeflateClusterCodec.instance(), deflate(data), 4096));
    }

    @Test
    void deflateInputEndingEarlyShouldFailNamingTheProgress() {
        byte[] data = compressible(65536);
        byte[] z = deflate(data);
        byte[] cut = Arrays.copyOf(z, z.length / 2);
        DataFormatException e = assertThrows(DataFormatException.class,
                () -> decode(DeflateClusterCodec.instance(), cut, 65536));
        assertTrue(e.getMessage().contains("input ended after"), e.getMessage());
    }

    @Test
    void deflateStreamShorterThanClusterShouldFail() {
        byte[] z = withTrailer(deflate(compressible(1000)), 100);
        DataFormatException e = assertThrows(DataFormatException.class,
                () -> decode(DeflateClusterCodec.instance(), z, 4096));
        assertTrue(e.getMessage().contains("ended after 1000 bytes (expected: 4096)"), e.getMessage());
    }

    @Test
    void deflateGarbageShouldFail() {
        byte[] junk = new byte[600];
        Arrays.fill(junk, (byte) 0xff);
        DataFormatException e = assertThrows(DataFormatException.class,
                () -> decode(DeflateClusterCodec.instance(), junk, 4096));
        assertTrue(e.getMessage().startsWith("deflate stream:"), e.getMessage());
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096, 65536, 2 << 20})
    void zstdFrameWithTrailingGarbageShouldDecodeExactlyOneCluster(int clusterSize) throws Exception {
        byte[] data = compressible(clusterSize);
        byte[] z = withTrailer(Zstd.compress(data, 3), 300);
        assertArrayEquals(data, decode(ZstdClusterCodec.instance(), z, clusterSize));
    }

    @Test
    void zstdIntoDirectBufferShouldDecode() throws Exception {
        byte[] data = compressible(65536);
        ByteBuffer dst = ByteBuffer.allocateDirect(65536);
        ZstdClusterCodec.instance().decompress(ByteBuffer.wrap(Zstd.compress(data, 1)), dst);
        byte[] out = new byte[65536];
        dst.flip().get(out);
        assertArrayEquals(data, out);
    }

    @Test
    void zstdInputEndingEarlyShouldFail() {
        byte[] z = Zstd.compress(compressible(65536), 3);
        byte[] cut = Arrays.copyOf(z, z.length - 10);
        DataFormatException e = assertThrows(DataFormatException.class,
                () -> decode(ZstdClusterCodec.instance(), cut, 65536));
        assertTrue(e.getMessage().startsWith("zstd stream: input ended"), e.getMessage());
    }

    @Test
    void zstdFrameLargerThanClusterShouldFail() {
        byte[] z = Zstd.compress(compressible(8192), 3);
        DataFormatException e = assertThrows(DataFormatException.class,
                () -> decode(ZstdClusterCodec.instance(), z, 4096));
        assertTrue(e.getMessage().startsWith("zstd frame: not complete"), e.getMessage());
    }

    @Test
    void zstdGarbageShouldFail() {
        byte[] junk = new byte[600];
        Arrays.fill(junk, (byte) 0x11);
        assertThrows(DataFormatException.class, () -> decode(ZstdClusterCodec.instance(), junk, 4096));
    }

    @Test
    void compressionTypeShouldMapHeaderValuesAndNames() {
        assertEquals(CompressionType.DEFLATE, CompressionType.fromHeader(0));
        assertEquals("zstd", CompressionType.fromHeader(1).qemuName());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CompressionType.fromHeader(2));
        assertEquals("compression_type: 2 (expected: 0 (zlib) or 1 (zstd))", e.getMessage());
        assertEquals(ZstdClusterCodec.instance(), CompressionType.ZSTD.codec());
    }
}
