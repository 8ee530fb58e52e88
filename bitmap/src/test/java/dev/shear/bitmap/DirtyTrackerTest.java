package dev.shear.bitmap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockException;
import dev.shear.block.RawImage;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link DirtyTracker}: "every byte a mutating call may have changed is dirty in every enabled bitmap"
 * for write, write-zeroes and discard (dirty-bitmaps.md §10 pitfall 9); disabled bitmaps stay unchanged.
 */
class DirtyTrackerTest {
    private static final long SIZE = 8 << 20;

    @Test
    void writeZeroesAndDiscardShouldMarkEnabledBitmapsOnly(@TempDir Path dir) throws IOException {
        Path img = dir.resolve("d.raw");
        Files.write(img, new byte[0]);
        try (java.io.RandomAccessFile f = new java.io.RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(SIZE);
        }
        DirtyBitmap on = DirtyBitmap.create("on", SIZE, 65536, true, true);
        DirtyBitmap coarse = DirtyBitmap.create("coarse", SIZE, 1 << 20, true, true);
        DirtyBitmap off = DirtyBitmap.create("off", SIZE, 65536, false, true);
        try (DirtyTracker t = new DirtyTracker(RawImage.open(img, true), List.of(on, coarse, off))) {
            t.write(4096, ByteBuffer.allocate(512), 0);
            t.writeZeroes(3 << 20, 65536, 0);
            // RawImage cannot discard: the call fails, yet marks (marking precedes delegation: over-report).
            assertThrows(BlockException.class, () -> t.discard(5 << 20, 70000, 0));
            assertThrows(BlockException.class, () -> t.write(SIZE - 1, ByteBuffer.allocate(2), 0));
        }
        assertEquals(List.of("0+65536:d", "65536+3080192:c", "3145728+65536:d", "3211264+2031616:c",
                "5242880+131072:d", "5373952+3014656:c"), dirty(on));
        assertEquals(List.of("0+1048576:d", "1048576+2097152:c", "3145728+1048576:d", "4194304+1048576:c",
                "5242880+1048576:d", "6291456+2097152:c"), dirty(coarse));
        assertTrue(off.isClean());
    }

    private static List<String> dirty(DirtyBitmap b) {
        List<String> out = new ArrayList<>();
        b.forEachRun(0, b.sizeBytes(), (o, l, d) -> out.add(o + "+" + l + (d ? ":d" : ":c")));
        return out;
    }
}
