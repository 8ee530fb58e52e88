package dev.shear.fleece.scratch;

import com.github.luben.zstd.Zstd;
import com.github.luben.zstd.ZstdCompressCtx;
import com.github.luben.zstd.ZstdDecompressCtx;
import com.github.luben.zstd.ZstdException;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import net.jpountz.lz4.LZ4Compressor;
import net.jpountz.lz4.LZ4Exception;
import net.jpountz.lz4.LZ4Factory;
import net.jpountz.lz4.LZ4SafeDecompressor;

/**
 * How {@link SpillStore} compresses one cluster: a whole cluster in, one self-contained block out,
 * no framing (the store's index keeps both lengths). Every method is thread-safe.
 *
 * <p>lz4 (the fast compressor, ~1 GB/s per core) is the default: a copy sits on a guest write's
 * path. zstd level 1 trades about twice the CPU for roughly a third less space. NONE stores clusters
 * as they are (incompressible guests, or CPU-starved hosts). Whatever the store's codec, a cluster
 * that does not shrink by at least one allocation slot is stored raw.
 */
public enum SpillCodec {
    NONE((byte) 0) {
        @Override
        public int maxCompressedLength(int rawLength) {
            return rawLength;
        }

        @Override
        int compress(byte[] src, int srcOff, int length, byte[] dst, int dstOff) {
            System.arraycopy(src, srcOff, dst, dstOff, length);
            return length;
        }

        @Override
        void decompress(byte[] src, int srcOff, int srcLength, byte[] dst, int dstOff, int rawLength,
                String resource) throws BlockException {
            if (srcLength != rawLength) {
                throw damaged(resource, "stored length: " + srcLength + " (expected: " + rawLength + ")");
            }
            System.arraycopy(src, srcOff, dst, dstOff, rawLength);
        }
    },

    LZ4((byte) 1) {
        @Override
        public int maxCompressedLength(int rawLength) {
            return Lz4.COMPRESSOR.maxCompressedLength(rawLength);
        }

        @Override
        int compress(byte[] src, int srcOff, int length, byte[] dst, int dstOff) {
            return Lz4.COMPRESSOR.compress(src, srcOff, length, dst, dstOff, dst.length - dstOff);
        }

        @Override
        void decompress(byte[] src, int srcOff, int srcLength, byte[] dst, int dstOff, int rawLength,
                String resource) throws BlockException {
            int n;
            try {
                // The safe decompressor never reads or writes outside the given bounds, even on damaged input.
                n = Lz4.DECOMPRESSOR.decompress(src, srcOff, srcLength, dst, dstOff, rawLength);
            } catch (LZ4Exception e) {
                throw damaged(resource, "lz4: " + e.getMessage());
            }
            if (n != rawLength) {
                throw damaged(resource, "lz4 length: " + n + " (expected: " + rawLength + ")");
            }
        }
    },

    ZSTD((byte) 2) {
        @Override
        public int maxCompressedLength(int rawLength) {
            return Math.toIntExact(Zstd.compressBound(rawLength));
        }

        @Override
        int compress(byte[] src, int srcOff, int length, byte[] dst, int dstOff) {
            return ZstdContexts.COMPRESS.get().compressByteArray(dst, dstOff, dst.length - dstOff, src, srcOff, length);
        }

        @Override
        void decompress(byte[] src, int srcOff, int srcLength, byte[] dst, int dstOff, int rawLength,
                String resource) throws BlockException {
            int n;
            try {
                n = ZstdContexts.DECOMPRESS.get().decompressByteArray(dst, dstOff, rawLength, src, srcOff, srcLength);
            } catch (ZstdException e) {
                throw damaged(resource, "zstd: " + e.getMessage());
            }
            if (n != rawLength) {
                throw damaged(resource, "zstd length: " + n + " (expected: " + rawLength + ")");
            }
        }
    };

    /** zstd's fastest regular level: a copy is on a guest write's path. */
    static final int ZSTD_LEVEL = 1;

    private final byte id;

    SpillCodec(byte id) {
        this.id = id;
    }

    /** A stable one-byte identifier (for a future on-disk index). */
    public byte id() {
        return id;
    }

    /** Upper bound of {@link #compress}'s output for {@code rawLength} input bytes. */
    public abstract int maxCompressedLength(int rawLength);

    /**
     * Compresses {@code src[srcOff, srcOff + length)} into {@code dst} from {@code dstOff}, which has room
     * for {@link #maxCompressedLength}; returns the compressed length.
     */
    abstract int compress(byte[] src, int srcOff, int length, byte[] dst, int dstOff);

    /**
     * Decompresses exactly {@code rawLength} bytes; damaged input is an IO {@link BlockException} naming
     * {@code resource}, never an unchecked exception or a short result.
     */
    abstract void decompress(byte[] src, int srcOff, int srcLength, byte[] dst, int dstOff, int rawLength,
            String resource) throws BlockException;

    private static BlockException damaged(String resource, String detail) {
        return new BlockException(BlockErrorKind.IO, resource, -1, "spilled cluster damaged: " + detail);
    }

    /** lz4 instances: thread-safe, created on first use. */
    private static final class Lz4 {
        static final LZ4Compressor COMPRESSOR = LZ4Factory.fastestInstance().fastCompressor();
        static final LZ4SafeDecompressor DECOMPRESSOR = LZ4Factory.fastestInstance().safeDecompressor();
    }

    /**
     * zstd contexts are not thread-safe but are costly to create (native allocations): one per thread.
     * They are freed when the thread and the context become unreachable.
     */
    private static final class ZstdContexts {
        static final ThreadLocal<ZstdCompressCtx> COMPRESS =
                ThreadLocal.withInitial(() -> new ZstdCompressCtx().setLevel(ZSTD_LEVEL));
        static final ThreadLocal<ZstdDecompressCtx> DECOMPRESS = ThreadLocal.withInitial(ZstdDecompressCtx::new);
    }
}
