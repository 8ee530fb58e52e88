package dev.shear.nbd.server;

import java.io.IOException;
import java.util.List;

/**
 * The dirty bitmaps an export offers as {@code qemu:dirty-bitmap:NAME} contexts
 * (nbd-protocol.md §7.2). The bitmap module implements it; until then exports use {@link #NONE}.
 *
 * <p>Contract: thread-safe; {@link #dirtyRuns} answers from memory (never by reading guest data).
 */
public interface DirtyBitmapSource {

    /** Receives runs of equal dirtiness, in order and contiguous from the requested offset. */
    @FunctionalInterface
    interface RunSink {
        /** @return false to stop the walk (the caller has enough runs) */
        boolean accept(long length, boolean dirty);
    }

    /** The exported bitmap names, in the order that fixes their context ids. */
    List<String> bitmapNames();

    /**
     * Reports [offset, offset + length) of bitmap {@code name} as runs until covered or the sink stops.
     * Runs may end past the range; the caller clips.
     */
    void dirtyRuns(String name, long offset, long length, RunSink sink) throws IOException;

    /** No bitmaps. */
    DirtyBitmapSource NONE = new DirtyBitmapSource() {
        @Override
        public List<String> bitmapNames() {
            return List.of();
        }

        @Override
        public void dirtyRuns(String name, long offset, long length, RunSink sink) {
            throw new IllegalArgumentException("bitmap: " + name + " (expected: an exported bitmap)");
        }
    };
}
