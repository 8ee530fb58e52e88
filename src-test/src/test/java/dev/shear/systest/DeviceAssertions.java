package dev.shear.systest;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.shear.block.BlockDevice;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Reads a whole device and compares it byte for byte with a raw reference file.
 *
 * <p>The device is read front to back in chunks whose sizes cycle through {@link #CHUNKS} (starting
 * at a position chosen by the caller, so different cases see different alignments): tiny, odd,
 * sector, cluster-sized and multi-cluster, so reads start and end at every kind of offset. Buffers
 * alternate between heap and direct, and each read lands at a non-zero buffer position, to catch
 * engines that ignore {@code position()}.
 */
final class DeviceAssertions {
    /** Chunk sizes in bytes; unaligned ones on purpose. */
    static final int[] CHUNKS = {65536, 4096, 1, 131079, 512, 4095, 1 << 20, 3, (2 << 20) + 1, 65537, 777,
        16384, 511, 3 << 20};

    private DeviceAssertions() {
    }

    /**
     * Asserts that {@code device} reads exactly as {@code reference}; the message names {@code label},
     * the first differing offset, the bytes on both sides and the chunk that read it.
     */
    static void assertReadsAs(BlockDevice device, Path reference, String label, int rotation) throws IOException {
        long size = Files.size(reference);
        assertEquals(size, device.size(), label + ": virtual size");
        int maxChunk = 0;
        for (int c : CHUNKS) {
            maxChunk = Math.max(maxChunk, c);
        }
        ByteBuffer heap = ByteBuffer.allocate(maxChunk + 16);
        ByteBuffer direct = ByteBuffer.allocateDirect(maxChunk + 16);
        ByteBuffer expected = ByteBuffer.allocate(maxChunk);
        try (FileChannel ref = FileChannel.open(reference, StandardOpenOption.READ)) {
            long offset = 0;
            int i = Math.floorMod(rotation, CHUNKS.length);
            int n = 0;
            while (offset < size) {
                int len = (int) Math.min(CHUNKS[i], size - offset);
                i = (i + 1) % CHUNKS.length;
                ByteBuffer dst = (n++ % 2 == 0 ? heap : direct).clear();
                int pad = n % 16;
                dst.position(pad).limit(pad + len);
                device.read(offset, dst);
                assertEquals(pad + len, dst.position(), label + ": read(" + offset + ", " + len
                        + ") must advance the buffer's position to its limit");
                expected.clear().limit(len);
                while (expected.hasRemaining()) {
                    if (ref.read(expected, offset + expected.position()) < 0) {
                        break;
                    }
                }
                for (int k = 0; k < len; k++) {
                    byte want = expected.get(k);
                    byte got = dst.get(pad + k);
                    if (want != got) {
                        throw new AssertionError(String.format(
                                "%s: first difference at guest offset %d (0x%x): expected 0x%02x (qemu-img), "
                                        + "got 0x%02x; in a read of %d bytes at %d", label, offset + k, offset + k,
                                want & 0xff, got & 0xff, len, offset));
                    }
                }
                offset += len;
            }
        }
    }
}
