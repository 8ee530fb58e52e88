package dev.shear.block;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RawImageTest {
    @TempDir
    Path dir;

    private Path image(int size, long seed) throws IOException {
        byte[] data = new byte[size];
        new SplittableRandom(seed).nextBytes(data);
        Path p = dir.resolve("disk.raw");
        Files.write(p, data);
        return p;
    }

    @Test
    void readShouldReturnTheFileBytes() throws IOException {
        Path p = image(1 << 16, 1);
        byte[] expected = Files.readAllBytes(p);
        try (RawImage raw = RawImage.open(p, false)) {
            ByteBuffer buf = ByteBuffer.allocate(1000);
            raw.read(12345, buf);
            assertArrayEquals(Arrays.copyOfRange(expected, 12345, 13345), buf.array());
        }
    }

    @Test
    void readPastTheEndShouldFailWithOutOfRange() throws IOException {
        try (RawImage raw = RawImage.open(image(4096, 2), false)) {
            BlockException e = assertThrows(BlockException.class, () -> raw.read(4000, ByteBuffer.allocate(100)));
            assertEquals(BlockErrorKind.OUT_OF_RANGE, e.kind());
            assertTrue(e.getMessage().contains("offset 4000 length 100"), e.getMessage());
        }
    }

    @Test
    void writeToReadOnlyImageShouldFailWithReadOnly() throws IOException {
        try (RawImage raw = RawImage.open(image(4096, 3), false)) {
            BlockException e = assertThrows(BlockException.class,
                    () -> raw.write(0, ByteBuffer.allocate(1), WriteFlags.NONE));
            assertEquals(BlockErrorKind.READ_ONLY, e.kind());
        }
    }

    @Test
    void writeAndWriteZeroesShouldChangeTheFile() throws IOException {
        Path p = image(3 << 20, 4);
        try (RawImage raw = RawImage.open(p, true)) {
            raw.write(10, ByteBuffer.wrap(new byte[] {1, 2, 3}), WriteFlags.FUA);
            raw.writeZeroes(100, (2 << 20) + 7, WriteFlags.NONE);
            raw.flush();
        }
        byte[] after = Files.readAllBytes(p);
        assertArrayEquals(new byte[] {1, 2, 3}, Arrays.copyOfRange(after, 10, 13));
        for (int i = 100; i < 100 + (2 << 20) + 7; i++) {
            assertEquals(0, after[i], "byte " + i);
        }
    }

    @Test
    void fastZeroShouldBeRefusedAsNotSupported() throws IOException {
        try (RawImage raw = RawImage.open(image(4096, 5), true)) {
            BlockException e = assertThrows(BlockException.class,
                    () -> raw.writeZeroes(0, 4096, WriteFlags.FAST_ZERO));
            assertEquals(BlockErrorKind.NOT_SUPPORTED, e.kind());
        }
    }

    @Test
    void readSegmentsShouldBeOneFileSpan() throws IOException {
        try (RawImage raw = RawImage.open(image(8192, 6), false)) {
            List<ReadSegment> segs = new ArrayList<>();
            raw.readSegments(100, 8000, segs::add);
            assertEquals(1, segs.size());
            FileSpan span = (FileSpan) segs.get(0);
            assertEquals(100, span.position());
            assertEquals(8000, span.length());
        }
    }

    @Test
    void blockStatusShouldReportDataAtTheSameHostOffset() throws IOException {
        try (RawImage raw = RawImage.open(image(8192, 7), false)) {
            List<Extent> extents = new ArrayList<>();
            raw.blockStatus(512, 1024, extents::add);
            assertEquals(List.of(Extent.data(512, 1024, 0, 512)), extents);
        }
    }
}
