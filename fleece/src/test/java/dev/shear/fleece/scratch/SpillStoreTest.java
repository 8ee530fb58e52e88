package dev.shear.fleece.scratch;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class SpillStoreTest {
    private static final int CLUSTER = 64 * 1024;
    private static final long SEED = Long.getLong("shear.seed", 42L);

    @TempDir
    Path dir;

    /** Half random bytes, half a repeating text: compresses to roughly half. */
    static byte[] compressible(SplittableRandom r, int length) {
        byte[] b = new byte[length];
        byte[] text = "copy-before-write fleecing cluster ".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        for (int i = 0; i < length; i += 4096) {
            boolean random = r.nextBoolean();
            for (int j = i; j < Math.min(length, i + 4096); j++) {
                b[j] = random ? (byte) r.nextInt() : text[j % text.length];
            }
        }
        return b;
    }

    static byte[] random(SplittableRandom r, int length) {
        byte[] b = new byte[length];
        r.nextBytes(b);
        return b;
    }

    private static byte[] get(ScratchTarget s, long c, int offset, int length) throws Exception {
        ByteBuffer dst = ByteBuffer.allocate(length);
        s.get(c, offset, dst);
        assertFalse(dst.hasRemaining());
        return dst.array();
    }

    @ParameterizedTest
    @EnumSource(SpillCodec.class)
    void clustersShouldRoundTripWholeAndInPart(SpillCodec codec) throws Exception {
        SplittableRandom r = new SplittableRandom(SEED);
        try (SpillStore s = SpillStore.create(dir.resolve("spill"), codec, Long.MAX_VALUE)) {
            byte[][] data = {compressible(r, CLUSTER), random(r, CLUSTER), new byte[CLUSTER],
                compressible(r, 5000), compressible(r, 1 << 20)};
            for (int c = 0; c < data.length; c++) {
                s.put(c, ByteBuffer.wrap(data[c]));
            }
            for (int c = 0; c < data.length; c++) {
                assertArrayEquals(data[c], get(s, c, 0, data[c].length), codec + " cluster " + c + " seed " + SEED);
                assertArrayEquals(java.util.Arrays.copyOfRange(data[c], 1000, 3000), get(s, c, 1000, 2000));
            }
            assertTrue(s.isZero(2));
            assertFalse(s.isZero(0));
            // A direct source buffer works the same.
            ByteBuffer direct = ByteBuffer.allocateDirect(CLUSTER).put(data[0]).flip();
            s.put(9, direct);
            assertFalse(direct.hasRemaining());
            assertArrayEquals(data[0], get(s, 9, 0, CLUSTER));
        }
    }

    @Test
    void aClusterShouldStayCompressedOnlyWhenThatSavesAnEighthOfItsSlots() {
        int slot = SpillStore.SLOT_SIZE;
        assertTrue(SpillStore.worthCompressing(14 * slot, CLUSTER), "14 of 16 slots");
        assertFalse(SpillStore.worthCompressing(14 * slot + 1, CLUSTER), "15 of 16 slots");
        assertTrue(SpillStore.worthCompressing(7 * slot, 8 * slot), "7 of 8 slots: one slot is the least saving");
        assertFalse(SpillStore.worthCompressing(slot, slot), "a one-slot cluster cannot shrink");
        assertTrue(SpillStore.worthCompressing(1, 2 * slot));
    }

    @ParameterizedTest
    @EnumSource(value = SpillCodec.class, names = {"LZ4", "ZSTD"})
    void clustersThatSaveLessThanAnEighthShouldBeStoredRawAndCountAsMisses(SpillCodec codec) throws Exception {
        // Random data with two zero pages: the codec saves one slot of sixteen, less than an eighth.
        SplittableRandom r = new SplittableRandom(SEED);
        try (SpillStore s = SpillStore.create(dir.resolve("spill"), codec, Long.MAX_VALUE)) {
            java.util.List<byte[]> data = new java.util.ArrayList<>();
            for (int c = 0; c < SpillStore.MISSES_BEFORE_SKIP + SpillStore.PROBE_INTERVAL; c++) {
                byte[] b = random(r, CLUSTER);
                java.util.Arrays.fill(b, 0, 2 * SpillStore.SLOT_SIZE, (byte) 0);
                data.add(b);
                s.put(c, ByteBuffer.wrap(b));
            }
            assertEquals((long) data.size() * CLUSTER, s.usedBytes(), "every cluster stored raw");
            assertEquals(SpillStore.PROBE_INTERVAL - 1, s.compressionSkips(),
                    "after " + SpillStore.MISSES_BEFORE_SKIP + " such clusters the codec is skipped, but for probes");
            for (int c = 0; c < data.size(); c++) {
                assertArrayEquals(data.get(c), get(s, c, 0, CLUSTER), codec + " cluster " + c);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = SpillCodec.class, names = {"LZ4", "ZSTD"})
    void incompressibleRunsShouldSkipTheCodecUntilAClusterShrinks(SpillCodec codec) throws Exception {
        SplittableRandom r = new SplittableRandom(SEED);
        try (SpillStore s = SpillStore.create(dir.resolve("spill"), codec, Long.MAX_VALUE)) {
            int c = 0;
            java.util.Map<Integer, byte[]> data = new java.util.HashMap<>();
            for (int i = 0; i < SpillStore.MISSES_BEFORE_SKIP; i++, c++) {
                data.put(c, random(r, CLUSTER));
                s.put(c, ByteBuffer.wrap(data.get(c)));
            }
            assertEquals(0, s.compressionSkips(), "the codec is tried until " + SpillStore.MISSES_BEFORE_SKIP
                    + " clusters in a row did not shrink");
            for (int i = 0; i < 2 * SpillStore.PROBE_INTERVAL; i++, c++) {
                data.put(c, random(r, CLUSTER));
                s.put(c, ByteBuffer.allocateDirect(CLUSTER).put(data.get(c)).flip());
            }
            assertEquals(2 * (SpillStore.PROBE_INTERVAL - 1), s.compressionSkips(), "one in PROBE_INTERVAL probed");
            // Compressible data comes back: at most PROBE_INTERVAL clusters go raw before a probe shrinks one,
            // and from then on every cluster is compressed again.
            long skipsBefore = s.compressionSkips();
            for (int i = 0; i < 3 * SpillStore.PROBE_INTERVAL; i++, c++) {
                data.put(c, compressible(r, CLUSTER));
                s.put(c, ByteBuffer.wrap(data.get(c)));
            }
            long skipped = s.compressionSkips() - skipsBefore;
            assertTrue(skipped < SpillStore.PROBE_INTERVAL, "skipped after compressible data returned: " + skipped);
            long used = s.usedBytes();
            s.put(c, ByteBuffer.wrap(compressible(r, CLUSTER)));
            assertEquals(skipsBefore + skipped, s.compressionSkips(), "compressing again");
            assertTrue(s.usedBytes() - used < CLUSTER, "stored compressed: " + (s.usedBytes() - used));
            for (var e : data.entrySet()) {   // raw, compressed, skipped: all read back the same
                assertArrayEquals(e.getValue(), get(s, e.getKey(), 0, CLUSTER), codec + " cluster " + e.getKey());
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = SpillCodec.class, names = {"LZ4", "ZSTD"})
    void compressibleClustersShouldTakeLessSpaceAndIncompressibleOnesStayRaw(SpillCodec codec) throws Exception {
        SplittableRandom r = new SplittableRandom(SEED);
        try (SpillStore s = SpillStore.create(dir.resolve("spill"), codec, Long.MAX_VALUE)) {
            s.put(0, ByteBuffer.wrap(compressible(r, CLUSTER)));
            long compressed = s.usedBytes();
            assertTrue(compressed <= CLUSTER * 3 / 4, codec + ": " + compressed);
            s.put(1, ByteBuffer.wrap(random(r, CLUSTER)));
            assertEquals(compressed + CLUSTER, s.usedBytes(), "random data stored raw: exactly one cluster");
        }
    }

    @Test
    void zeroClustersShouldCostNoFileSpace() throws Exception {
        try (SpillStore s = SpillStore.create(dir.resolve("spill"), SpillCodec.LZ4, Long.MAX_VALUE)) {
            for (int c = 0; c < 100; c++) {
                s.put(c, ByteBuffer.allocate(CLUSTER));
            }
            assertEquals(0, s.usedBytes());
            assertEquals(0, s.fileBytes());
            assertEquals(100, s.storedClusters());
            assertArrayEquals(new byte[100], get(s, 42, 7, 100));
        }
    }

    @Test
    void removedSpaceShouldBeReusedCoalescedAndTheEndShrunk() throws Exception {
        SplittableRandom r = new SplittableRandom(SEED);
        try (SpillStore s = SpillStore.create(dir.resolve("spill"), SpillCodec.NONE, Long.MAX_VALUE)) {
            for (int c = 0; c < 8; c++) {
                s.put(c, ByteBuffer.wrap(random(r, CLUSTER)));
            }
            long file = s.fileBytes();
            assertEquals(8L * CLUSTER, file);
            s.remove(2);
            s.remove(4);
            assertEquals(2, s.holeCount());
            s.remove(3);
            assertEquals(1, s.holeCount(), "2, 3 and 4 merge into one hole");
            byte[] big = random(r, 3 * CLUSTER);
            s.put(20, ByteBuffer.wrap(big));                     // fits the merged hole exactly
            assertEquals(0, s.holeCount());
            assertEquals(file, s.fileBytes(), "reused, not appended");
            assertArrayEquals(big, get(s, 20, 0, big.length));
            s.remove(7);
            s.remove(6);
            assertEquals(0, s.holeCount(), "holes at the end shrink the used area instead");
            s.put(21, ByteBuffer.wrap(random(r, CLUSTER)));
            s.put(22, ByteBuffer.wrap(random(r, CLUSTER)));
            assertEquals(file, s.fileBytes());
            assertEquals(8L * CLUSTER, s.usedBytes());
        }
    }

    @Test
    void smallerClusterShouldSplitAHoleAndReplacingShouldFreeTheOldCopy() throws Exception {
        SplittableRandom r = new SplittableRandom(SEED);
        try (SpillStore s = SpillStore.create(dir.resolve("spill"), SpillCodec.NONE, Long.MAX_VALUE)) {
            s.put(0, ByteBuffer.wrap(random(r, CLUSTER)));
            s.put(1, ByteBuffer.wrap(random(r, CLUSTER)));
            s.remove(0);
            byte[] small = random(r, 8192);
            s.put(5, ByteBuffer.wrap(small));
            assertEquals(1, s.holeCount(), "the remainder of the hole stays free");
            assertEquals(CLUSTER + 8192, s.usedBytes());
            s.put(1, ByteBuffer.wrap(small));                    // replace: the old 64 KiB are freed
            assertEquals(2 * 8192, s.usedBytes());
            assertArrayEquals(small, get(s, 1, 0, 8192));
        }
    }

    @Test
    void putBeyondCapacityShouldFailWithNoSpaceAndStoreNothing() throws Exception {
        SplittableRandom r = new SplittableRandom(SEED);
        try (SpillStore s = SpillStore.create(dir.resolve("spill"), SpillCodec.NONE, 2L * CLUSTER)) {
            s.put(0, ByteBuffer.wrap(random(r, CLUSTER)));
            s.put(1, ByteBuffer.wrap(random(r, CLUSTER)));
            BlockException e = assertThrows(BlockException.class, () -> s.put(2, ByteBuffer.wrap(random(r, CLUSTER))));
            assertEquals(BlockErrorKind.NO_SPACE, e.kind());
            assertTrue(e.getMessage().contains("expected: <= capacity 131072"), e.getMessage());
            assertEquals(2, s.storedClusters());
            s.put(3, ByteBuffer.allocate(CLUSTER));              // zero clusters still fit
            s.remove(0);
            s.put(2, ByteBuffer.wrap(random(r, CLUSTER)));       // freed space is usable again
            assertEquals(2L * CLUSTER, s.usedBytes());
        }
    }

    @Test
    void missingClusterShouldFailWithIoAndCloseShouldDeleteTheFile() throws Exception {
        Path file = dir.resolve("spill");
        SpillStore s = SpillStore.create(file, SpillCodec.ZSTD, Long.MAX_VALUE);
        assertEquals(BlockErrorKind.IO, assertThrows(BlockException.class, () -> get(s, 3, 0, 10)).kind());
        s.put(0, ByteBuffer.wrap(compressible(new SplittableRandom(SEED), CLUSTER)));
        assertTrue(Files.exists(file));
        s.close();
        s.close();
        assertFalse(Files.exists(file));
        assertEquals(BlockErrorKind.SHUTDOWN, assertThrows(BlockException.class, () -> get(s, 0, 0, 10)).kind());
    }

    @ParameterizedTest
    @EnumSource(value = SpillCodec.class, names = {"LZ4", "ZSTD"})
    void damagedSpillFileShouldFailWithIoNotCrash(SpillCodec codec) throws Exception {
        Path file = dir.resolve("spill");
        try (SpillStore s = SpillStore.create(file, codec, Long.MAX_VALUE)) {
            s.put(0, ByteBuffer.wrap(compressible(new SplittableRandom(SEED), CLUSTER)));
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
                // Garbage over the whole first slot. (Records carry no checksum: the file lives only as long
                // as the process; damage is caught when the codec notices it, as here.)
                byte[] garbage = new byte[4096];
                java.util.Arrays.fill(garbage, (byte) 0xff);
                ch.write(ByteBuffer.wrap(garbage), 0);
            }
            BlockException e = assertThrows(BlockException.class, () -> get(s, 0, 0, CLUSTER));
            assertEquals(BlockErrorKind.IO, e.kind());
            assertTrue(e.getMessage().contains("spilled cluster damaged"), e.getMessage());
        }
    }
}
