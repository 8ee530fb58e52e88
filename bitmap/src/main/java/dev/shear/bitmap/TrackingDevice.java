package dev.shear.bitmap;

import dev.shear.block.BlockCapabilities;
import dev.shear.block.BlockDevice;
import dev.shear.block.ExtentSink;
import dev.shear.block.ReadSegmentSink;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The device a writable qcow2 export serves: image, then {@link DirtyTracker}, with the
 * {@link BitmapManager}'s quiesce lock around every guest change (so a checkpoint starts at one
 * instant) and a close that stores the bitmaps, clearing in_use, before the image closes
 * (design.md §The block graph; dirty-bitmaps.md §4.2, §4.3).
 *
 * <p>Invariant: a write, write-zeroes or discard is marked in every enabled bitmap before the
 * image sees it, hence before it is acknowledged (DirtyTracker's invariant); and the bitmaps are
 * in_use on disk before the image sees it ({@link BitmapManager#beforeGuestChange}).
 */
final class TrackingDevice implements BlockDevice {
    private final BitmapManager manager;
    private final DirtyTracker tracker;
    /** Read side held by each guest change; the manager takes the write side for an instant. */
    private final ReentrantReadWriteLock quiesce;

    TrackingDevice(BitmapManager manager, DirtyTracker tracker, ReentrantReadWriteLock quiesce) {
        this.manager = manager;
        this.tracker = tracker;
        this.quiesce = quiesce;
    }

    @Override
    public void write(long offset, ByteBuffer src, int flags) throws IOException {
        quiesce.readLock().lock();
        try {
            manager.beforeGuestChange();
            tracker.write(offset, src, flags);
        } finally {
            quiesce.readLock().unlock();
        }
    }

    @Override
    public void writeZeroes(long offset, long length, int flags) throws IOException {
        quiesce.readLock().lock();
        try {
            manager.beforeGuestChange();
            tracker.writeZeroes(offset, length, flags);
        } finally {
            quiesce.readLock().unlock();
        }
    }

    @Override
    public void discard(long offset, long length, int flags) throws IOException {
        quiesce.readLock().lock();
        try {
            manager.beforeGuestChange();
            tracker.discard(offset, length, flags);
        } finally {
            quiesce.readLock().unlock();
        }
    }

    @Override
    public String name() {
        return tracker.name();
    }

    @Override
    public long size() {
        return tracker.size();
    }

    @Override
    public BlockCapabilities capabilities() {
        return tracker.capabilities();
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        tracker.read(offset, dst);
    }

    @Override
    public void readSegments(long offset, long length, ReadSegmentSink sink) throws IOException {
        tracker.readSegments(offset, length, sink);
    }

    @Override
    public void blockStatus(long offset, long length, ExtentSink sink) throws IOException {
        tracker.blockStatus(offset, length, sink);
    }

    @Override
    public void flush() throws IOException {
        tracker.flush();
    }

    /** Stores the bitmaps (in_use cleared), then closes the image. */
    @Override
    public void close() throws IOException {
        manager.closeWithImage();
    }

    /** The manager of this device's bitmaps (the serve wiring finds it through the device). */
    BitmapManager manager() {
        return manager;
    }

    @Override
    public String toString() {
        return "TrackingDevice[" + tracker.name() + "]";
    }
}
