package dev.shear.qcow2;

import dev.shear.block.ImageFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.Arrays;

/** An {@link ImageFile} over a byte array, for unit tests: reads past the end give zeros. */
public final class MemoryImageFile implements ImageFile {
    private byte[] data;

    public MemoryImageFile(byte[] data) {
        this.data = data.clone();
    }

    /** A file of {@code size} zero bytes. */
    public static MemoryImageFile ofSize(int size) {
        return new MemoryImageFile(new byte[size]);
    }

    /** Writes {@code bytes} at {@code offset}, growing the file. */
    public MemoryImageFile poke(long offset, byte[] bytes) {
        write(offset, ByteBuffer.wrap(bytes));
        return this;
    }

    public MemoryImageFile poke(long offset, ByteBuffer bytes) {
        write(offset, bytes.duplicate());
        return this;
    }

    @Override
    public Path path() {
        return Path.of("mem.qcow2");
    }

    @Override
    public boolean isWritable() {
        return true;
    }

    @Override
    public void read(long position, ByteBuffer dst) {
        if (position < data.length) {
            int n = (int) Math.min(dst.remaining(), data.length - position);
            dst.put(data, (int) position, n);
        }
        while (dst.hasRemaining()) {
            dst.put((byte) 0);
        }
    }

    @Override
    public void write(long position, ByteBuffer src) {
        int end = (int) position + src.remaining();
        if (end > data.length) {
            data = Arrays.copyOf(data, end);
        }
        src.get(data, (int) position, src.remaining());
    }

    @Override
    public void sync() {
    }

    @Override
    public long size() {
        return data.length;
    }

    @Override
    public void truncate(long size) {
        data = Arrays.copyOf(data, (int) size);
    }

    @Override
    public FileChannel channel() {
        return null;
    }

    @Override
    public void close() {
    }
}
