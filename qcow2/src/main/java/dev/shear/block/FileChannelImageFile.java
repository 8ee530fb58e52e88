package dev.shear.block;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/** {@link ImageFile} over a {@link FileChannel}: positional reads and writes, fdatasync for sync. */
final class FileChannelImageFile implements ImageFile {
    private final Path path;
    private final FileChannel channel;
    private final boolean writable;

    private FileChannelImageFile(Path path, FileChannel channel, boolean writable) {
        this.path = path;
        this.channel = channel;
        this.writable = writable;
    }

    static FileChannelImageFile open(Path path, boolean writable) throws IOException {
        try {
            FileChannel ch = writable
                    ? FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE)
                    : FileChannel.open(path, StandardOpenOption.READ);
            return new FileChannelImageFile(path, ch, writable);
        } catch (NoSuchFileException e) {
            throw new BlockException(BlockErrorKind.IO, path.toString(), -1, "file: not found", e);
        } catch (IOException e) {
            throw new BlockException(BlockErrorKind.IO, path.toString(), -1,
                    "open: " + e.getClass().getSimpleName() + ": " + e.getMessage(), e);
        }
    }

    @Override
    public Path path() {
        return path;
    }

    @Override
    public boolean isWritable() {
        return writable;
    }

    @Override
    public void read(long position, ByteBuffer dst) throws IOException {
        long pos = position;
        while (dst.hasRemaining()) {
            int n = channel.read(dst, pos);
            if (n < 0) {
                // Past the end of the file: the rest reads as zeros.
                while (dst.hasRemaining()) {
                    dst.put((byte) 0);
                }
                return;
            }
            pos += n;
        }
    }

    @Override
    public void write(long position, ByteBuffer src) throws IOException {
        if (!writable) {
            throw BlockException.readOnly(path.toString(), "write");
        }
        long pos = position;
        while (src.hasRemaining()) {
            pos += channel.write(src, pos);
        }
    }

    @Override
    public void sync() throws IOException {
        if (writable) {
            channel.force(false);
        }
    }

    @Override
    public long size() throws IOException {
        return channel.size();
    }

    @Override
    public void truncate(long size) throws IOException {
        if (!writable) {
            throw BlockException.readOnly(path.toString(), "truncate");
        }
        long current = channel.size();
        if (size < current) {
            channel.truncate(size);
        } else if (size > current) {
            // FileChannel cannot grow a file without writing: one zero byte at the new end leaves a hole.
            channel.write(ByteBuffer.wrap(new byte[1]), size - 1);
        }
    }

    @Override
    public FileChannel channel() {
        return channel;
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }

    @Override
    public String toString() {
        return path.toString();
    }
}
