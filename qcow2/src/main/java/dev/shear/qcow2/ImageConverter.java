package dev.shear.qcow2;

import dev.shear.block.BlockDevice;
import dev.shear.block.Extent;
import dev.shear.block.ImageFile;
import dev.shear.block.RawImage;
import dev.shear.block.Zeros;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Copies the guest-visible content of one image into a new one, with {@code qemu-img convert}'s meaning
 * (QEMU qemu-img.c {@code img_convert}, {@code convert_iteration_sectors}, {@code convert_co_write}).
 *
 * <h2>What is written</h2>
 * <ul>
 *   <li>Without a target backing file the target is new and reads as zeros, so ranges the source's
 *       block status calls zero (holes, zero clusters, anything unallocated in the whole chain) are
 *       skipped, and so are data blocks that turn out to be all zeros (qemu-img's {@code -S 4k}: checked
 *       per 4 KiB block, whole clusters with {@code -c}). Zeros stay unallocated.</li>
 *   <li>With {@code -c} every guest cluster that is not all zeros is written whole with
 *       {@link Qcow2Image#writeCompressed} (a cluster that does not shrink becomes a normal one).</li>
 *   <li>With a target backing file ({@code -B}) only what the source's top layer allocates is copied
 *       (the rest comes from the new backing file, as qemu-img assumes); zero ranges of the top layer
 *       are written as zeroes, because the backing file below may not read as zeros there.</li>
 * </ul>
 * The source is read through its own backing chain, so the target has everything (qemu-img's default).
 */
public final class ImageConverter {
    /** qemu-img convert's default {@code -S}: all-zero blocks of this size are not written. */
    static final int MIN_SPARSE = 4096;
    /** Block status is asked for this much at a time (bounds the extent list). */
    private static final long STATUS_WINDOW = 256L << 20;

    /**
     * What to make.
     *
     * @param qcow2          target format qcow2 (else raw)
     * @param createOptions  qcow2 creation options (size is overwritten by the source's); null for raw
     * @param compress       {@code -c}
     * @param targetBacking  {@code -B}: the target's backing file is set; only the source's top layer is copied
     */
    public record Target(boolean qcow2, Qcow2CreateOptions createOptions, boolean compress, boolean targetBacking) {
    }

    private ImageConverter() {
    }

    /**
     * Creates {@code dst} and copies {@code src} into it.
     *
     * @throws IllegalArgumentException for {@code -c} with a raw target
     */
    public static void convert(BlockDevice src, Path dst, Target target) throws IOException {
        if (target.compress() && !target.qcow2()) {
            throw new IllegalArgumentException("-c: raw target (expected: -O qcow2; raw has no compression)");
        }
        long size = src.size();
        if (target.qcow2()) {
            Qcow2CreateOptions o = target.createOptions();
            Qcow2Creator.create(dst, new Qcow2CreateOptions(size, o.clusterSize(), o.version(), o.compressionType(),
                    o.extendedL2(), o.lazyRefcounts(), o.refcountBits(), o.preallocation(), o.backingFile(),
                    o.backingFormat()));
            try (Qcow2Image out = Qcow2Image.open(ImageFile.open(dst, true),
                    Qcow2OpenOptions.defaults().withReadOnly(false))) {
                // Whole clusters per compressed write; otherwise 1 MiB runs, which the writer allocates
                // contiguously and writes with one call.
                copy(src, out, target.compress() ? out.clusterSize() : Math.max(out.clusterSize(), 1 << 20),
                        target);
                out.flush();
            }
        } else {
            try (RandomAccessFile f = new RandomAccessFile(dst.toFile(), "rw")) {
                f.setLength(0);
                f.setLength(size);   // sparse: reads as zeros
            }
            try (RawImage out = RawImage.open(dst, true)) {
                copy(src, out, 1 << 20, target);
                out.flush();
            }
        }
    }

    private static void copy(BlockDevice src, BlockDevice out, int chunk, Target target) throws IOException {
        long size = src.size();
        ByteBuffer buf = ByteBuffer.allocateDirect(chunk);
        for (long w = 0; w < size; w += STATUS_WINDOW) {
            long wEnd = Math.min(size, w + STATUS_WINDOW);
            List<Extent> extents = new ArrayList<>();
            src.blockStatus(w, wEnd - w, e -> {
                extents.add(e);
                return true;
            });
            int next = 0;
            for (long pos = w; pos < wEnd; pos += chunk) {
                long end = Math.min(wEnd, pos + chunk);
                while (next < extents.size() && extents.get(next).end() <= pos) {
                    next++;
                }
                List<Extent> here = new ArrayList<>();
                for (int i = next; i < extents.size() && extents.get(i).offset() < end; i++) {
                    here.add(extents.get(i).clip(Math.max(pos, extents.get(i).offset()),
                            Math.min(end, extents.get(i).end())));
                }
                copyChunk(src, out, pos, end, here, target, buf);
            }
        }
    }

    private static void copyChunk(BlockDevice src, BlockDevice out, long pos, long end, List<Extent> extents,
                                  Target target, ByteBuffer buf) throws IOException {
        if (target.targetBacking()) {
            boolean top = false;
            for (Extent e : extents) {
                top |= e.depth() == 0;
            }
            if (!top) {
                return;   // comes from the target's backing file
            }
            if (target.compress()) {
                ByteBuffer b = read(src, pos, end, buf);
                if (Zeros.isZero(b, 0, b.limit())) {
                    out.writeZeroes(pos, end - pos, 0);
                } else {
                    ((Qcow2Image) out).writeCompressed(pos, b);
                }
                return;
            }
            for (Extent e : extents) {
                if (e.depth() != 0) {
                    continue;
                }
                if (e.isZero()) {
                    out.writeZeroes(e.offset(), e.length(), 0);
                } else {
                    out.write(e.offset(), read(src, e.offset(), e.end(), buf), 0);
                }
            }
            return;
        }
        boolean allZero = true;
        for (Extent e : extents) {
            allZero &= e.isZero();
        }
        if (allZero) {
            return;   // the new target reads as zeros already
        }
        ByteBuffer b = read(src, pos, end, buf);
        if (target.compress()) {
            if (!Zeros.isZero(b, 0, b.limit())) {
                ((Qcow2Image) out).writeCompressed(pos, b);
            }
            return;
        }
        int n = b.limit();
        int runStart = -1;
        for (int at = 0; at < n; at += MIN_SPARSE) {
            boolean data = !Zeros.isZero(b, at, Math.min(n, at + MIN_SPARSE));
            if (data && runStart < 0) {
                runStart = at;
            } else if (!data && runStart >= 0) {
                out.write(pos + runStart, b.slice(runStart, at - runStart), 0);
                runStart = -1;
            }
        }
        if (runStart >= 0) {
            out.write(pos + runStart, b.slice(runStart, n - runStart), 0);
        }
    }

    /** [pos, end) of {@code src} in {@code buf} (reused: valid until the next read). */
    private static ByteBuffer read(BlockDevice src, long pos, long end, ByteBuffer buf) throws IOException {
        ByteBuffer b = buf.clear().limit((int) (end - pos));
        src.read(pos, b);
        return b.flip();
    }
}
