package dev.shear.fleece.job;

import dev.shear.bitmap.DirtyBitmap;
import org.roaringbitmap.RoaringBitmap;

/**
 * Which bytes of a backup's extents a pull client has consumed — read, or been told by block status
 * that they read as zeros (see {@link PullBackupJob}) — counted in units of {@code 2^unitBits} bytes
 * (512 B while the disk has at most 2^32 of them). A unit counts once however often it is recorded;
 * ranges outside the backup's extents do not count. Thread-safe (synchronized; a record costs work per
 * touched Roaring container, not per byte; contiguous ranges stay run containers).
 */
final class ReadProgress {
    private final int unitBits;
    private final long sizeBytes;
    /** Units of the backup's extents; immutable after construction. */
    private final RoaringBitmap wanted;
    private final long wantedUnits;
    private final long totalBytes;
    /** Wanted units read so far; guarded by this. */
    private final RoaringBitmap read = new RoaringBitmap();
    /** Guarded by this. */
    private long readUnits;

    private ReadProgress(int unitBits, long sizeBytes, RoaringBitmap wanted, long totalBytes) {
        this.unitBits = unitBits;
        this.sizeBytes = sizeBytes;
        this.wanted = wanted;
        this.wantedUnits = wanted.getLongCardinality();
        this.totalBytes = totalBytes;
    }

    static int unitBits(long sizeBytes) {
        int bits = 9;
        while (bits < 31 && (sizeBytes >>> bits) >= (1L << 32)) {
            bits++;
        }
        return bits;
    }

    /** Every byte of the disk (a full backup). */
    static ReadProgress full(long sizeBytes) {
        int bits = unitBits(sizeBytes);
        RoaringBitmap w = new RoaringBitmap();
        long units = (sizeBytes + (1L << bits) - 1) >>> bits;
        if (units > 0) {
            w.add(0L, units);
        }
        return new ReadProgress(bits, sizeBytes, w, sizeBytes);
    }

    /** The dirty extents of {@code bitmap} (an incremental backup). */
    static ReadProgress dirty(DirtyBitmap bitmap) {
        long size = bitmap.sizeBytes();
        int bits = unitBits(size);
        RoaringBitmap w = new RoaringBitmap();
        long[] total = {0};
        bitmap.forEachDirty(0, size, (off, len, dirty) -> {
            if (dirty) {
                w.add(off >>> bits, (off + len + (1L << bits) - 1) >>> bits);
                total[0] += len;
            }
            return true;
        });
        return new ReadProgress(bits, size, w, total[0]);
    }

    long totalBytes() {
        return totalBytes;
    }

    /** Records [offset, offset + length) as consumed; true when this record completed the backup. */
    synchronized boolean record(long offset, long length) {
        if (length <= 0 || readUnits == wantedUnits) {
            return false;
        }
        long first = offset >>> unitBits;
        long end = (offset + length + (1L << unitBits) - 1) >>> unitBits;
        RoaringBitmap r = RoaringBitmap.bitmapOfRange(first, end);
        r.and(wanted);
        r.andNot(read);
        long added = r.getLongCardinality();
        if (added == 0) {
            return false;
        }
        read.or(r);
        readUnits += added;
        return readUnits == wantedUnits;
    }

    synchronized long doneBytes() {
        if (readUnits == wantedUnits) {
            return totalBytes;
        }
        return Math.min(totalBytes, readUnits << unitBits);
    }

    synchronized boolean isComplete() {
        return readUnits == wantedUnits;
    }

    long sizeBytes() {
        return sizeBytes;
    }
}
