package dev.shear.bitmap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockException;
import dev.shear.qcow2.bitmap.BitmapTable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** {@link BitmapCodec}: QEMU's serialization (dirty-bitmaps.md §2.4), fixtures and round trips. */
class BitmapCodecTest {
    private static final long SEED = Long.getLong("shear.seed", System.nanoTime());
    private static final long MIB = 1 << 20;

    /** Host clusters of a fake file: offset -> bytes. */
    static final class FakeClusters {
        final Map<Long, byte[]> clusters = new HashMap<>();
        long next = 0x10000;
        final int clusterSize;

        FakeClusters(int clusterSize) {
            this.clusterSize = clusterSize;
        }

        long put(ByteBuffer b) {
            byte[] copy = new byte[b.remaining()];
            b.get(copy);
            long at = next;
            next += clusterSize;
            clusters.put(at, copy);
            return at;
        }

        void read(long host, ByteBuffer dst) {
            byte[] c = clusters.get(host);
            dst.put(c, 0, dst.remaining());
        }
    }

    /**
     * The worked example observed with QEMU 7.2 (dirty-bitmaps.md §2.4): 64 MiB disk, 64 KiB granularity
     * and clusters; writes at 0 (64 KiB), 1 MiB (128 KiB), write-zeroes at 4 MiB (64 KiB).
     */
    @Test
    void qemuWorkedExampleShouldEncodeByteForByte() throws IOException {
        DirtyBitmap b = DirtyBitmap.create("b0", 64 * MIB, 65536, true, true);
        b.mark(0, 65536);
        b.mark(MIB, 131072);
        b.mark(4 * MIB, 65536);
        BitmapCodec.Encoded enc = BitmapCodec.encode(b, 16);
        assertEquals(1, enc.tableSize());
        assertEquals(1, enc.clusters().size());
        byte[] data = enc.clusters().get(0).bytes();
        assertEquals(65536, data.length);
        byte[] expected = new byte[65536];
        expected[0] = 0x01;   // chunk 0: byte 0, least significant bit
        expected[2] = 0x03;   // chunks 16-17 (1 MiB, 128 KiB): byte 2, bits 0-1
        expected[8] = 0x01;   // chunk 64 (4 MiB): byte 8, bit 0
        assertArrayEquals(expected, data);

        long[] table = {0xb0000L};
        DirtyBitmap back = BitmapCodec.decode("b0", 64 * MIB, 16, true, true, table, 16,
                (host, dst) -> dst.put(data, 0, dst.remaining()), "fixture");
        assertEquals(runs(b), runs(back));
    }

    @Test
    void allOnesAndAllZeroEntriesShouldDecodeWithoutData() throws IOException {
        // 512 B clusters: one slice = 4096 chunks. 3 slices; the last is partial (1000 chunks).
        long chunks = 4096 * 2 + 1000;
        long size = chunks * 65536 - 100;   // partial last granule too
        long[] table = {BitmapTable.ALL_ONES, 0, BitmapTable.ALL_ONES};
        DirtyBitmap b = BitmapCodec.decode("b", size, 16, false, true, table, 9, (h, d) -> {
            throw new AssertionError("no data cluster to read");
        }, "fixture");
        assertEquals(List.of("0+" + (4096L << 16) + ":c".replace(":c", ":d"),
                (4096L << 16) + "+" + (4096L << 16) + ":c", (8192L << 16) + "+" + (size - (8192L << 16)) + ":d"),
                runs(b));
    }

    @Test
    void tailBitsPastTheDiskEndShouldBeIgnored() throws IOException {
        byte[] data = new byte[512];
        data[0] = (byte) 0xff;   // chunks 0-7, but the disk has only 3 granules
        DirtyBitmap b = BitmapCodec.decode("b", 3 * 65536, 16, true, true, new long[] {0x200}, 9,
                (h, d) -> d.put(data, 0, d.remaining()), "fixture");
        assertEquals(List.of("0+196608:d"), runs(b));
    }

    @Test
    void tableOfWrongSizeShouldNameBothSizes() {
        BlockException e = assertThrows(BlockException.class, () -> BitmapCodec.decode("b", 64 * MIB, 16, true, true,
                new long[2], 16, (h, d) -> { }, "img.qcow2"));
        assertTrue(e.getMessage().contains("bitmap 'b': bitmap_table_size: 2 (expected: 1 for size 67108864 at "
                + "granularity 65536)"), e.getMessage());
    }

    /** Encode, then decode through a fake file: same runs, and every stored bit matches a BitSet model. */
    @Test
    void randomBitmapsShouldRoundTripAndMatchTheBitOrder() throws IOException {
        SplittableRandom rnd = new SplittableRandom(SEED);
        for (int round = 0; round < 150; round++) {
            int clusterBits = 9 + rnd.nextInt(4);
            int gBits = 9 + rnd.nextInt(8);
            long size = 1 + rnd.nextLong(50_000L << gBits);
            DirtyBitmap b = DirtyBitmap.create("r", size, 1L << gBits, true, true);
            BitSet model = new BitSet();
            int marks = rnd.nextInt(60);
            for (int k = 0; k < marks; k++) {
                long off = rnd.nextLong(size);
                long len = 1 + rnd.nextLong(Math.min(size - off, rnd.nextBoolean() ? 4L << gBits : 3000L << gBits));
                b.mark(off, len);
                model.set((int) (off >>> gBits), (int) ((off + len - 1) >>> gBits) + 1);
            }
            FakeClusters file = new FakeClusters(1 << clusterBits);
            List<Integer> indices = new ArrayList<>();
            long[] table = BitmapCodec.encode(b, clusterBits, (index, cluster) -> {
                indices.add(index);
                assertEquals(1 << clusterBits, cluster.remaining(), "full clusters, tail zero-filled");
                return file.put(cluster);
            });
            String ctx = "seed=" + SEED + " round=" + round + " size=" + size + " g=2^" + gBits + " c=2^" + clusterBits;
            assertEquals(BitmapTable.requiredTableSize(size, gBits, clusterBits), table.length, ctx);
            // Reference serialization: bit n -> byte n / 8, bit n % 8 (LSB first).
            for (int i = 0; i < table.length; i++) {
                byte[] c = table[i] == 0 ? new byte[1 << clusterBits] : file.clusters.get(table[i]);
                for (int byteIdx = 0; byteIdx < c.length; byteIdx++) {
                    int expected = 0;
                    for (int bit = 0; bit < 8; bit++) {
                        long n = ((long) i << (clusterBits + 3)) + byteIdx * 8L + bit;
                        if (n < Integer.MAX_VALUE && model.get((int) n)) {
                            expected |= 1 << bit;
                        }
                    }
                    assertEquals(expected, c[byteIdx] & 0xff, ctx + " slice " + i + " byte " + byteIdx);
                }
                assertEquals(table[i] != 0, indices.contains(i), ctx + " only non-zero slices are written");
            }
            DirtyBitmap back = BitmapCodec.decode("r", size, gBits, true, true, table, clusterBits, file::read, ctx);
            assertEquals(runs(b), runs(back), ctx);
        }
    }

    @Test
    void setBitsShouldMatchBitSet() {
        SplittableRandom rnd = new SplittableRandom(SEED);
        for (int i = 0; i < 2000; i++) {
            int from = rnd.nextInt(1024);
            int to = from + 1 + rnd.nextInt(1024 - from);
            long[] words = new long[16];
            BitmapCodec.setBits(words, from, to);
            BitSet ref = new BitSet();
            ref.set(from, to);
            assertArrayEquals(java.util.Arrays.copyOf(ref.toLongArray(), 16), words, "seed=" + SEED + " " + from
                    + ".." + to);
        }
    }

    static List<String> runs(DirtyBitmap b) {
        List<String> out = new ArrayList<>();
        b.forEachRun(0, b.sizeBytes(), (o, l, d) -> out.add(o + "+" + l + (d ? ":d" : ":c")));
        return out;
    }
}
