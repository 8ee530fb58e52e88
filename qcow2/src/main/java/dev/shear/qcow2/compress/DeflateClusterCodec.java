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

    /** One Inflater per thread, reset per cluster: creating and ending one per cluster cost 10-15 %. */
    private static final ThreadLocal<Inflater> INFLATER = ThreadLocal.withInitial(() -> new Inflater(true));

    /** The dummy byte Inflater(nowrap) may need to see the end of a stream (Inflater javadoc). */
    private static final ByteBuffer DUMMY = ByteBuffer.allocate(1).asReadOnlyBuffer();

    @Override
    public void decompress(ByteBuffer src, ByteBuffer dst) throws DataFormatException {
        int wanted = dst.remaining();
        Inflater inflater = INFLATER.get();
        inflater.reset();
        boolean dummyGiven = false;
        try {
            inflater.setInput(src);
            while (dst.hasRemaining()) {
                int n = inflater.inflate(dst);
                if (n == 0) {
                    if (inflater.finished()) {
                        throw new DataFormatException("deflate stream: ended after " + (wanted - dst.remaining())
                                + " bytes (expected: " + wanted + ")");
                    }
                    if (inflater.needsDictionary()) {
                        throw new DataFormatException("deflate stream: needs a preset dictionary after "
                                + (wanted - dst.remaining()) + " of " + wanted + " bytes");
                    }
                    if (inflater.needsInput()) {
                        if (dummyGiven) {
                            throw new DataFormatException("deflate stream: input ended after "
                                    + (wanted - dst.remaining()) + " of " + wanted + " bytes");
                        }
                        // A stream ending exactly at the end of our input may need one more byte to finish.
                        inflater.setInput(DUMMY.duplicate());
                        dummyGiven = true;
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
            // Drop the reference to the caller's buffer; the Inflater itself is reused by this thread.
            inflater.reset();
        }
    }

    @Override
    public int compress(ByteBuffer src, ByteBuffer dst) {
        throw new UnsupportedOperationException("deflate compression: not implemented (write engine)");
    }
}
