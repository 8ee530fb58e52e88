package dev.shear.block;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;

/**
 * Positional I/O on one image file: the single place that talks to the OS. An interface so that crash
 * tests can substitute a double that drops or tears unsynced writes (Lucene MockDirectoryWrapper).
 *
 * <p>All methods are thread-safe and positional (pread/pwrite): no shared file pointer.
 */
public interface ImageFile extends Closeable {

    /** The file's path (for messages and for resolving relative backing names). */
    Path path();

    boolean isWritable();

    /**
     * Fills {@code dst} from {@code position}; bytes at or past the end of the file read as zeros
     * (qcow2-format.md §1: the last cluster may be partial).
     */
    void read(long position, ByteBuffer dst) throws IOException;

    /** Writes all of {@code src} at {@code position}, extending the file if needed. */
    void write(long position, ByteBuffer src) throws IOException;

    /** Makes every completed write durable (fdatasync). */
    void sync() throws IOException;

    /** Current length in bytes. */
    long size() throws IOException;

    /** Sets the length (grow with a hole, or shrink). */
    void truncate(long size) throws IOException;

    /**
     * The channel for zero-copy transfers of raw data ({@link FileSpan}), or null when this file
     * cannot offer one (test doubles).
     */
    FileChannel channel();

    /** Opens a file read-only or read-write. */
    static ImageFile open(Path path, boolean writable) throws IOException {
        return FileChannelImageFile.open(path, writable);
    }
}
