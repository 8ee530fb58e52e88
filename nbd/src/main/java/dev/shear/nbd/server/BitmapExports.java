package dev.shear.nbd.server;

import dev.shear.bitmap.DirtyBitmap;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The dirty bitmaps one export offers as {@code qemu:dirty-bitmap:NAME} (nbd-protocol.md §7.2),
 * answered from {@link DirtyBitmap} runs: status 1 (NBD_STATE_DIRTY) for dirty, 0 for clean.
 *
 * <p>Runs start at the request offset, end on granule boundaries inside the request and at its end
 * (QEMU nbd/server.c bitmap_to_extents: the same extents, so {@code nbdinfo --map} prints the same
 * lines). The walk costs O(runs), so a whole 16 TiB disk with few dirty extents is answered at once;
 * the sink stops it when the reply is full (BlockStatusBuilder caps extents per chunk).
 *
 * <p>Thread-safe: the map is fixed at construction; bitmaps synchronize themselves.
 */
public final class BitmapExports implements DirtyBitmapSource {
    /** Name to bitmap, in the order the user gave (fixes context ids). Immutable after construction. */
    private final Map<String, DirtyBitmap> bitmaps;

    /** @param bitmaps in export order; names must be distinct */
    public BitmapExports(List<DirtyBitmap> bitmaps) {
        Map<String, DirtyBitmap> m = new LinkedHashMap<>();
        for (DirtyBitmap b : bitmaps) {
            if (m.put(b.name(), b) != null) {
                throw new IllegalArgumentException("bitmap '" + b.name() + "': exported twice (expected: once)");
            }
        }
        this.bitmaps = m;
    }

    /** {@link DirtyBitmapSource#NONE} when there is nothing to export. */
    public static DirtyBitmapSource of(List<DirtyBitmap> bitmaps) {
        return bitmaps.isEmpty() ? NONE : new BitmapExports(bitmaps);
    }

    @Override
    public List<String> bitmapNames() {
        return new ArrayList<>(bitmaps.keySet());
    }

    @Override
    public void dirtyRuns(String name, long offset, long length, RunSink sink) {
        DirtyBitmap b = bitmaps.get(name);
        if (b == null) {
            throw new IllegalArgumentException("bitmap: " + name + " (expected: one of " + bitmaps.keySet() + ")");
        }
        long len = Math.min(length, b.sizeBytes() - offset);
        b.forEachRun(offset, len, (off, runLength, dirty) -> sink.accept(runLength, dirty));
    }
}
