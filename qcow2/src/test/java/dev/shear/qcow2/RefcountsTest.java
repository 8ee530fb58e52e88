package dev.shear.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.ByteBuffer;
import java.util.HexFormat;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Refcount block entries for every refcount_order (qcow2-format.md §5.1, §15.7). */
class RefcountsTest {
    private static final long SEED = Long.getLong("shear.seed", 42L);

    /** Annotated blocks: entries 0..3 = 1, 0, 1, 1 (order 0) or 1, 2, 3, maximum (other orders). */
    @Test
    void fixtureBlocksOfEveryOrderShouldDecode() {
        // order 0, 1 bit: entry 0 is bit 0 of byte 0 -> 1,0,1,1 = 0b1101
        assertEntries("0d", 0, 1, 0, 1, 1);
        // order 1, 2 bits: entries from the low bits: 01 | 10 << 2 | 11 << 4 | 11 << 6 = 0xf9
        assertEntries("f9", 1, 1, 2, 3, 3);
        // order 2, 4 bits: byte 0 = entry 1 << 4 | entry 0; byte 1 = entry 3 << 4 | entry 2
        assertEntries("21f3", 2, 1, 2, 3, 15);
        // order 3, 8 bits: one byte each
        assertEntries("010203ff", 3, 1, 2, 3, 255);
        // order 4, 16 bits big-endian (QEMU default)
        assertEntries("000100020003ffff", 4, 1, 2, 3, 0xffff);
        // order 5, 32 bits big-endian
        assertEntries("000000010000000200000003ffffffff", 5, 1, 2, 3, 0xffffffffL);
        // order 6, 64 bits big-endian; the maximum reads as -1 (unsigned 2^64 - 1)
        assertEntries("0000000000000001" + "0000000000000002" + "0000000000000003" + "ffffffffffffffff", 6,
                1, 2, 3, -1);
    }

    private static void assertEntries(String hex, int order, long... expected) {
        ByteBuffer block = ByteBuffer.wrap(HexFormat.of().parseHex(hex));
        for (int i = 0; i < expected.length; i++) {
            assertEquals(expected[i], Refcounts.get(block, order, i), "order " + order + " entry " + i);
        }
        ByteBuffer written = ByteBuffer.allocate(block.capacity());
        for (int i = 0; i < expected.length; i++) {
            Refcounts.set(written, order, i, expected[i]);
        }
        assertArrayEquals(block.array(), written.array(), "order " + order);
    }

    @ParameterizedTest(name = "refcount_order {0}")
    @ValueSource(ints = {0, 1, 2, 3, 4, 5, 6})
    void randomWritesShouldMatchArrayModel(int order) {
        int clusterBits = 9;
        int entries = 1 << Refcounts.refcountBlockBits(clusterBits, order);
        ByteBuffer block = ByteBuffer.allocate(1 << clusterBits);
        long[] model = new long[entries];
        long max = Refcounts.maxRefcount(order);
        SplittableRandom r = new SplittableRandom(SEED + order);
        for (int step = 0; step < 20_000; step++) {
            int i = r.nextInt(entries);
            long v = order == 6 ? r.nextLong() : r.nextLong(max + 1);
            Refcounts.set(block, order, i, v);
            model[i] = v;
            int probe = r.nextInt(entries);
            assertEquals(model[probe], Refcounts.get(block, order, probe),
                    "seed=" + SEED + " order=" + order + " step=" + step + " index=" + probe);
        }
        for (int i = 0; i < entries; i++) {
            assertEquals(model[i], Refcounts.get(block, order, i), "seed=" + SEED + " order=" + order + " i=" + i);
        }
    }

    @Test
    void valueAboveMaximumShouldBeRejected() {
        ByteBuffer block = ByteBuffer.allocate(512);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Refcounts.set(block, 2, 0, 16));
        assertEquals("refcount: 16 (expected: <= 15 for refcount_order 2)", e.getMessage());
        assertThrows(IndexOutOfBoundsException.class, () -> Refcounts.get(block, 4, 256));
        assertThrows(IllegalArgumentException.class, () -> Refcounts.get(block, 7, 0));
    }

    @Test
    void blockBitsShouldMatchSpecFormula() {
        assertEquals(15, Refcounts.refcountBlockBits(16, 4)); // 32768 16-bit entries per 64 KiB block
        assertEquals(24, Refcounts.refcountBlockBits(21, 0));
        assertEquals(6, Refcounts.refcountBlockBits(9, 6));
        assertEquals(1, Refcounts.maxRefcount(0));
        assertEquals(0xffff, Refcounts.maxRefcount(4));
    }
}
