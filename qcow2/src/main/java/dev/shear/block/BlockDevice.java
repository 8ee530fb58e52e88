package dev.shear.block;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * A fixed-size array of bytes: the one interface of the block graph (design.md §The block graph).
 * Images implement it, filters (dirty tracking, copy-before-write, snapshot views) wrap it, and the
 * NBD server exports whatever sits on top.
 *
 * <p>Contract for every implementation:
 * <ul>
 *   <li>Thread-safe: many reads (and, where writable, writes) run at once from a pool; no global lock
 *       is held around data I/O.</li>
 *   <li>Ranges are checked first: offset &ge; 0, length &ge; 0, offset + length &le; {@link #size()},
 *       else {@link BlockErrorKind#OUT_OF_RANGE} before anything happens.</li>
 *   <li>Failures are {@link BlockException}s; a failed range does not affect others.</li>
 *   <li>Mutating calls on a device whose {@link BlockCapabilities#canWrite()} is false fail with
 *       {@link BlockErrorKind#READ_ONLY}.</li>
 * </ul>
 */
public interface BlockDevice extends Closeable {

    /** A name for messages and logs: the image path or the device's name. */
    String name();

    /** Virtual size in bytes. */
    long size();

    BlockCapabilities capabilities();

    /**
     * Reads {@code dst.remaining()} bytes at guest {@code offset} into {@code dst}, advancing its
     * position to its limit. Unallocated ranges read as zeros (or from the backing chain).
     */
    void read(long offset, ByteBuffer dst) throws IOException;

    /**
     * Describes the read of [offset, offset + length) as consecutive segments, in order, covering the
     * range exactly, so that raw data can leave by sendfile and zeros as holes. The default says
     * "copy it all".
     */
    default void readSegments(long offset, long length, ReadSegmentSink sink) throws IOException {
        checkRange(offset, length);
        if (length > 0) {
            sink.accept(new ReadSegment.Copy(offset, length));
        }
    }

    /**
     * Reports the allocation state of [offset, offset + length) as contiguous extents in order,
     * starting at {@code offset}, until the range is covered or the sink returns false. Extents may
     * run past the end of the range; callers clip. Answers from metadata only, never by reading data.
     */
    void blockStatus(long offset, long length, ExtentSink sink) throws IOException;

    /** Writes {@code src.remaining()} bytes at {@code offset}; {@code flags} from {@link WriteFlags}. */
    default void write(long offset, ByteBuffer src, int flags) throws IOException {
        throw BlockException.readOnly(name(), "write");
    }

    /** Makes [offset, offset + length) read as zeros; see {@link WriteFlags#NO_HOLE}, {@link WriteFlags#FAST_ZERO}. */
    default void writeZeroes(long offset, long length, int flags) throws IOException {
        throw BlockException.readOnly(name(), "write zeroes");
    }

    /** Tells the device the range's contents are no longer needed; reads afterwards may return anything. */
    default void discard(long offset, long length, int flags) throws IOException {
        throw BlockException.readOnly(name(), "discard");
    }

    /** Makes every write completed before this call durable. */
    default void flush() throws IOException {
    }

    /** Checks offset and length against {@link #size()}; throws OUT_OF_RANGE. */
    default void checkRange(long offset, long length) throws BlockException {
        if (offset < 0 || length < 0 || offset > size() || length > size() - offset) {
            throw BlockException.outOfRange(name(), offset, length, size());
        }
    }

    @Override
    void close() throws IOException;
}
