package dev.shear.qcow2.compress;

import com.jcraft.jzlib.GZIPException;
import com.jcraft.jzlib.JZlib;
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
 * <p>Compression is QEMU's exactly ({@code qcow2_zlib_compress}): {@code deflateInit2(Z_DEFAULT_COMPRESSION,
 * Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY)}, one {@code Z_FINISH} into the caller's buffer, "does not fit"
 * unless the stream ends there. {@code java.util.zip.Deflater} has no window-bits parameter (it always uses
 * 32 KiB, which QEMU 7.2 happens to read), so the writer is jzlib, a pure-Java zlib port that takes them.
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

    /** QEMU's deflate window: raw deflate (negative), 2^12 = 4 KiB (block/qcow2-threads.c). */
    static final int WINDOW_BITS = -12;
    /** QEMU's memLevel (zlib's maximum; the default would be 8). */
    static final int MEM_LEVEL = 9;

    @Override
    public int compress(ByteBuffer src, ByteBuffer dst) {
        byte[] in = new byte[src.remaining()];
        src.duplicate().get(in);
        byte[] out = new byte[dst.remaining()];
        com.jcraft.jzlib.Deflater deflater;
        try {
            deflater = new com.jcraft.jzlib.Deflater(JZlib.Z_DEFAULT_COMPRESSION, WINDOW_BITS, MEM_LEVEL);
        } catch (GZIPException e) {
            throw new IllegalStateException("jzlib deflateInit2: " + e.getMessage(), e);
        }
        try {
            deflater.setInput(in, 0, in.length, false);
            deflater.setOutput(out, 0, out.length);
            int rc = deflater.deflate(JZlib.Z_FINISH);
            if (rc != JZlib.Z_STREAM_END) {
                return -1;   // Z_OK / Z_BUF_ERROR: the output buffer filled up before the stream ended
            }
            int n = (int) deflater.getTotalOut();
            dst.put(out, 0, n);
            src.position(src.limit());
            return n;
        } finally {
            deflater.end();
        }
    }
}
