package dev.shear.bitmap;

import dev.shear.block.BlockCapabilities;
import dev.shear.block.BlockDevice;
import dev.shear.block.ExtentSink;
import dev.shear.block.ReadSegmentSink;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * Records guest changes in dirty bitmaps: a {@link BlockDevice} decorator that marks every enabled
 * bitmap for each write, write-zeroes and discard, then delegates (design.md §The block graph;
 * dirty-bitmaps.md §4.2, §10 pitfall 9: all three change guest-visible data).
 *
 * <p>Invariant: when a mutating call returns (successfully or not), every byte it may have changed is
 * dirty in every bitmap that was enabled and attached when it started. Marking happens BEFORE the
 * delegate call, so a failed or torn write over-reports (a harmless extra copy in the next backup)
 * and a crash never leaves a change that no bitmap saw. Range checks come first, so an out-of-range
 * request marks nothing.
 *
 * <p>Bitmaps may be attached and detached while I/O runs (checkpoints): the list is copy-on-write,
 * read without locks on the write path. To make a new bitmap start at an exact instant relative to
 * guest writes, the caller quiesces writes around {@link #attach} (design.md §Checkpoints).
 */
public final class DirtyTracker implements BlockDevice {
    private final BlockDevice delegate;
    /** The bitmaps recording this device; copy-on-write, so writers iterate a stable snapshot. */
    private final List<DirtyBitmap> bitmaps = new CopyOnWriteArrayList<>();

    public DirtyTracker(BlockDevice delegate, List<DirtyBitmap> initial) {
        this.delegate = delegate;
        for (DirtyBitmap b : initial) {
            attach(b);
        }
    }

    /** Starts recording into {@code bitmap} (if enabled); its size must be the device's. */
    public void attach(DirtyBitmap bitmap) {
        if (bitmap.sizeBytes() != delegate.size()) {
            throw new IllegalArgumentException("bitmap '" + bitmap.name() + "': size " + bitmap.sizeBytes()
                    + " (expected: " + delegate.size() + ", the device size)");
        }
        bitmaps.add(bitmap);
    }

    /** Stops recording into {@code bitmap}; true if it was attached. */
    public boolean detach(DirtyBitmap bitmap) {
        return bitmaps.remove(bitmap);
    }

    /** The attached bitmaps (enabled or not). */
    public List<DirtyBitmap> bitmaps() {
        return List.copyOf(bitmaps);
    }

    /** Marks every enabled bitmap; disabled ones are skipped, as QEMU's bdrv_set_dirty does. */
    private void markAll(long offset, long length) {
        for (DirtyBitmap b : bitmaps) {
            if (b.isEnabled()) {
                b.mark(offset, length);
            }
        }
    }

    @Override
    public void write(long offset, ByteBuffer src, int flags) throws IOException {
        checkRange(offset, src.remaining());
        markAll(offset, src.remaining());
        delegate.write(offset, src, flags);
    }

    @Override
    public void writeZeroes(long offset, long length, int flags) throws IOException {
        checkRange(offset, length);
        markAll(offset, length);
        delegate.writeZeroes(offset, length, flags);
    }

    @Override
    public void discard(long offset, long length, int flags) throws IOException {
        checkRange(offset, length);
        markAll(offset, length);
        delegate.discard(offset, length, flags);
    }

    // Everything below neither changes guest data nor needs a mark: plain delegation.

    @Override
    public String name() {
        return delegate.name();
    }

    @Override
    public long size() {
        return delegate.size();
    }

    @Override
    public BlockCapabilities capabilities() {
        return delegate.capabilities();
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        delegate.read(offset, dst);
    }

    @Override
    public void readSegments(long offset, long length, ReadSegmentSink sink) throws IOException {
        delegate.readSegments(offset, length, sink);
    }

    @Override
    public void blockStatus(long offset, long length, ExtentSink sink) throws IOException {
        delegate.blockStatus(offset, length, sink);
    }

    @Override
    public void flush() throws IOException {
        delegate.flush();
    }

    @Override
    public void close() throws IOException {
        delegate.close();
    }
}
