package dev.shear.block;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;

/**
 * A raw image: guest offset = file offset. Reads past the end of a shorter file return zeros; the
 * virtual size is the file size at open.
 *
 * <p>Block status reports the whole range as data at depth 0: Java offers no SEEK_DATA/SEEK_HOLE, and
 * answering "data" is always correct (NBD allows a server to claim data for a hole, never the reverse).
 * Discard is not advertised for the same reason (no hole punching); write-zeroes writes zeros.
 */
public final class RawImage implements BlockDevice {
    private static final int ZERO_CHUNK = 1 << 20;
    private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(ZERO_CHUNK).asReadOnlyBuffer();

    private final ImageFile file;
    private final String name;
    private final long size;
    private final BlockCapabilities capabilities;

    public RawImage(ImageFile file) throws IOException {
        this(file, file.size());
    }

    /** A raw device of {@code size} bytes over {@code file} (a backing file may be shorter than its user). */
    public RawImage(ImageFile file, long size) {
        this.file = file;
        this.name = file.path().toString();
        this.size = size;
        this.capabilities = file.isWritable()
                // canFastZero: a FAST_ZERO request is honoured by failing fast (NOT_SUPPORTED), as the
                // NBD spec allows; qemu-nbd advertises it for raw files too.
                ? new BlockCapabilities(true, true, true, false, true, true, true,
                        1, 4096, BlockCapabilities.DEFAULT_MAXIMUM_BLOCK_SIZE)
                : BlockCapabilities.readOnly(4096);
    }

    public static RawImage open(Path path, boolean writable) throws IOException {
        return new RawImage(ImageFile.open(path, writable));
    }

    public ImageFile file() {
        return file;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public BlockCapabilities capabilities() {
        return capabilities;
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        checkRange(offset, dst.remaining());
        try {
            file.read(offset, dst);
        } catch (IOException e) {
            throw BlockException.io(name, offset, "read", e);
        }
    }

    @Override
    public void readSegments(long offset, long length, ReadSegmentSink sink) throws IOException {
        checkRange(offset, length);
        if (length == 0) {
            return;
        }
        long fileSize = file.size();
        long inFile = Math.max(0, Math.min(length, fileSize - offset));
        if (inFile > 0) {
            if (file.channel() != null) {
                sink.accept(new FileSpan(file.channel(), offset, inFile));
            } else {
                sink.accept(new ReadSegment.Copy(offset, inFile));
            }
        }
        if (inFile < length) {
            sink.accept(new ReadSegment.Zeros(length - inFile));
        }
    }

    @Override
    public void blockStatus(long offset, long length, ExtentSink sink) throws IOException {
        checkRange(offset, length);
        if (length > 0) {
            sink.accept(Extent.data(offset, length, 0, offset));
        }
    }

    @Override
    public void write(long offset, ByteBuffer src, int flags) throws IOException {
        requireWritable("write");
        checkRange(offset, src.remaining());
        try {
            file.write(offset, src);
            if (WriteFlags.has(flags, WriteFlags.FUA)) {
                file.sync();
            }
        } catch (IOException e) {
            throw BlockException.io(name, offset, "write", e);
        }
    }

    @Override
    public void writeZeroes(long offset, long length, int flags) throws IOException {
        requireWritable("write zeroes");
        checkRange(offset, length);
        if (WriteFlags.has(flags, WriteFlags.FAST_ZERO)) {
            throw new BlockException(BlockErrorKind.NOT_SUPPORTED, name, offset,
                    "write zeroes: no fast zeroing on raw files");
        }
        try {
            long pos = offset;
            long end = offset + length;
            while (pos < end) {
                int n = (int) Math.min(ZERO_CHUNK, end - pos);
                file.write(pos, ZEROS.duplicate().limit(n));
                pos += n;
            }
            if (WriteFlags.has(flags, WriteFlags.FUA)) {
                file.sync();
            }
        } catch (IOException e) {
            throw BlockException.io(name, offset, "write zeroes", e);
        }
    }

    @Override
    public void flush() throws IOException {
        if (file.isWritable()) {
            try {
                file.sync();
            } catch (IOException e) {
                throw BlockException.io(name, -1, "flush", e);
            }
        }
    }

    private void requireWritable(String what) throws BlockException {
        if (!capabilities.canWrite()) {
            throw BlockException.readOnly(name, what);
        }
    }

    @Override
    public void close() throws IOException {
        file.close();
    }
}
