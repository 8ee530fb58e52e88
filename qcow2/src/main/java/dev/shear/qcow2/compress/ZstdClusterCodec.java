package dev.shear.qcow2.compress;

import com.github.luben.zstd.EndDirective;
import com.github.luben.zstd.ZstdCompressCtx;
import com.github.luben.zstd.ZstdDecompressCtx;
import com.github.luben.zstd.ZstdException;
import java.nio.ByteBuffer;
import java.util.zip.DataFormatException;

/**
 * zstd as qcow2 compression type 1 stores it: a bare frame at the compressed offset, no length prefix
 * (qcow2-format.md §7).
 *
 * <p>Decompression follows QEMU's {@code qcow2_zstd_decompress} (block/qcow2-threads.c): stream-decode
 * until the output holds exactly one cluster (several frames are allowed), fail if a step makes no
 * progress (input exhausted, or a corrupt stream) and fail if the frame is not complete when the output
 * is full (the data would decode to more than a cluster). Bytes after the frame are never looked at.
 */
public final class ZstdClusterCodec implements ClusterCodec {
    static final ZstdClusterCodec INSTANCE = new ZstdClusterCodec();

    private ZstdClusterCodec() {
    }

    public static ZstdClusterCodec instance() {
        return INSTANCE;
    }

    @Override
    public CompressionType type() {
        return CompressionType.ZSTD;
    }

    /**
     * Per-thread decoder state: a native context (reset per cluster, never shared) and direct buffers
     * that grow to the largest cluster seen (at most 2 MiB out, 4 MiB in). Allocating both per cluster
     * cost more than the decompression itself (measured with Qcow2ReadBenchmark / CompressedReadBenchmark).
     */
    private static final ThreadLocal<State> STATE = ThreadLocal.withInitial(State::new);

    private static final class State {
        final ZstdDecompressCtx ctx = new ZstdDecompressCtx();
        ByteBuffer in = ByteBuffer.allocateDirect(0);
        ByteBuffer out = ByteBuffer.allocateDirect(0);

        ByteBuffer in(int n) {
            if (in.capacity() < n) {
                in = ByteBuffer.allocateDirect(n);
            }
            return in.clear().limit(n);
        }

        ByteBuffer out(int n) {
            if (out.capacity() < n) {
                out = ByteBuffer.allocateDirect(n);
            }
            return out.clear().limit(n);
        }
    }

    @Override
    public void decompress(ByteBuffer src, ByteBuffer dst) throws DataFormatException {
        int wanted = dst.remaining();
        State state = STATE.get();
        // zstd-jni's stream API wants direct buffers on both sides.
        ByteBuffer in = src.isDirect() ? src : state.in(src.remaining()).put(src).flip();
        ByteBuffer out = dst.isDirect() ? dst : state.out(wanted);
        int start = out.position();
        boolean frameDone = false;
        ZstdDecompressCtx ctx = state.ctx;
        ctx.reset();
        try {
            while (out.hasRemaining()) {
                int inBefore = in.position();
                int outBefore = out.position();
                frameDone = ctx.decompressDirectByteBufferStream(out, in);
                if (in.position() == inBefore && out.position() == outBefore) {
                    throw new DataFormatException("zstd stream: input ended after "
                            + (out.position() - start) + " of " + wanted + " bytes");
                }
            }
        } catch (ZstdException e) {
            throw new DataFormatException("zstd stream: " + e.getMessage() + " after "
                    + (out.position() - start) + " of " + wanted + " bytes");
        }
        if (!frameDone) {
            throw new DataFormatException("zstd frame: not complete after " + wanted
                    + " bytes (expected: a frame of exactly one cluster)");
        }
        if (out != dst) {
            out.flip();
            out.position(start);
            dst.put(out);
        }
    }

    /** QEMU compresses with zstd's default level ({@code ZSTD_CLEVEL_DEFAULT}). */
    static final int LEVEL = 3;

    /** Per-thread compressor context (reset per cluster) and direct buffers, as for decompression. */
    private static final ThreadLocal<CompressState> COMPRESS = ThreadLocal.withInitial(CompressState::new);

    private static final class CompressState {
        final ZstdCompressCtx ctx = new ZstdCompressCtx();
        final State buffers = new State();
    }

    /**
     * QEMU's {@code qcow2_zstd_compress}: the streaming API with {@code ZSTD_e_end} into a buffer of
     * {@code dst.remaining()} bytes; a frame that does not end inside it "does not fit".
     */
    @Override
    public int compress(ByteBuffer src, ByteBuffer dst) {
        CompressState state = COMPRESS.get();
        ByteBuffer in = state.buffers.in(src.remaining()).put(src.duplicate()).flip();
        ByteBuffer out = state.buffers.out(dst.remaining());
        ZstdCompressCtx ctx = state.ctx;
        ctx.reset();
        ctx.setLevel(LEVEL);
        try {
            while (true) {
                int inBefore = in.position();
                int outBefore = out.position();
                boolean done = ctx.compressDirectByteBufferStream(out, in, EndDirective.END);
                if (done) {
                    break;
                }
                if (!out.hasRemaining() || (in.position() == inBefore && out.position() == outBefore)) {
                    return -1;   // the frame does not fit
                }
            }
        } catch (ZstdException e) {
            return -1;   // zstd reports "destination buffer too small" as an error
        }
        out.flip();
        int n = out.remaining();
        dst.put(out);
        src.position(src.limit());
        return n;
    }
}
