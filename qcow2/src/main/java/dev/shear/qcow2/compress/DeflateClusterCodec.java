package dev.shear.qcow2.compress;

import java.nio.ByteBuffer;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * Raw deflate (RFC 1951, no zlib header or Adler-32) as qcow2 compression type 0 stores it
 * (qcow2-format.md §7).
 *
 * <p>QEMU inflates with {@code windowBits = -12} and {@code Z_FINISH}, and accepts {@code Z_BUF_ERROR}
 * as long as the output is full, because the input length is known only to the sector
 * (block/qcow2-threads.c {@code qcow2_zlib_decompress}). We do the same with a
 * {@code java.util.zip.Inflater(nowrap = true)}: its 32 KiB window also accepts streams written with a
 * wider window than QEMU writes, which QEMU reads too (observed with 7.2).
 *
 * <p>The writer's half (a 4 KiB window, as QEMU deflates) is the write engine's: {@code Deflater} has no
 * window-bits parameter, so it will need a full flush every 4 KiB or another deflater.
 */
public final class DeflateClusterCodec implements ClusterCodec {
    static final DeflateClusterCodec INSTANCE = new DeflateClusterCodec();

    private DeflateClusterCodec() {
    }

    public static DeflateClusterCodec instance() {
        return INSTANCE;
    }

    @Override
    public CompressionType type() {
        return CompressionType.DEFLATE;
    }

    @Override
    public void decompress(ByteBuffer src, ByteBuffer dst) throws DataFormatException {
        int wanted = dst.remaining();
        // Inflater(nowrap) may need one byte past the end of the stream to see it (Inflater javadoc):
        // append a dummy zero byte, so that a stream ending exactly at the end of our input still works.
        ByteBuffer in = ByteBuffer.allocate(src.remaining() + 1);
        in.put(src).put((byte) 0).flip();
        Inflater inflater = new Inflater(true);
        try {
            inflater.setInput(in);
            while (dst.hasRemaining()) {
                int n = inflater.inflate(dst);
                if (n == 0) {
                    if (inflater.finished()) {
                        throw new DataFormatException("deflate stream: ended after " + (wanted - dst.remaining())
                                + " bytes (expected: " + wanted + ")");
                    }
                    if (inflater.needsInput() || inflater.needsDictionary()) {
                        throw new DataFormatException("deflate stream: input ended after "
                                + (wanted - dst.remaining()) + " of " + wanted + " bytes");
                    }
                }
            }
        } catch (DataFormatException e) {
            if (e.getMessage() != null && e.getMessage().startsWith("deflate stream:")) {
                throw e;
            }
            throw new DataFormatException("deflate stream: " + e.getMessage() + " after "
                    + (wanted - dst.remaining()) + " of " + wanted + " bytes");
        } finally {
            inflater.end();
        }
    }

    @Override
    public int compress(ByteBuffer src, ByteBuffer dst) {
        throw new UnsupportedOperationException("deflate compression: not implemented (write engine)");
    }
}
