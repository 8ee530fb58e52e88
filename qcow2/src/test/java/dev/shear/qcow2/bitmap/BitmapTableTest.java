package dev.shear.qcow2.bitmap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockException;
import dev.shear.qcow2.MemoryImageFile;
import java.nio.ByteBuffer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Bitmap table entries and sizes (dirty-bitmaps.md §2.3). */
class BitmapTableTest {
    @ParameterizedTest(name = "[{index}] size {0} gran 2^{1} cluster 2^{2} -> {3}")
    @CsvSource({
        "67108864, 16, 16, 1", // 1024 bits = 128 bytes
        "2199023255552, 16, 16, 64", // 2 TiB at 64 KiB: 4 MiB of bitmap
        "1, 9, 9, 1",
        "0, 16, 16, 0",
        "2097153, 9, 9, 2"}) // 4097 bits = 513 bytes: two 512-byte clusters
    void requiredTableSizeShouldRoundUpThreeTimes(long size, int gran, int cluster, long expected) {
        assertEquals(expected, BitmapTable.requiredTableSize(size, gran, cluster));
    }

    @ParameterizedTest(name = "[{index}] 0x{0} -> {1}")
    @CsvSource({
        "0000000000050000, ",
        "0000000000000000, ",
        "0000000000000001, ",
        "0000000000050001, all-ones flag: set with offset 0x50000",
        "0000000000050002, reserved bits: 0x2 (expected: 0)",
        "0100000000050000, reserved bits: 0x100000000000000",
        "0000000000050200, offset: 0x50200 (expected: cluster-aligned)"})
    void entryProblemsShouldBeNamed(String hex, String expected) {
        String p = BitmapTable.problem(Long.parseUnsignedLong(hex, 16), 16);
        if (expected == null) {
            assertNull(p);
        } else {
            assertTrue(p != null && p.contains(expected), p);
        }
    }

    @Test
    void allOnesOnlyWithoutOffset() {
        assertTrue(BitmapTable.isAllOnes(1));
        assertFalse(BitmapTable.isAllOnes(0x50000));
        assertEquals(0x50000, BitmapTable.dataOffset(0x50000));
    }

    @Test
    void badEntryShouldFailReadNamingBitmapAndIndex() {
        BitmapDirectoryEntry e = new BitmapDirectoryEntry(0x10000, 2, 0, 1, 9, "b", null);
        MemoryImageFile f = MemoryImageFile.ofSize(0x20000)
                .poke(0x10000, ByteBuffer.allocate(16).putLong(0x20000).putLong(0x20001).flip());
        BlockException ex = assertThrows(BlockException.class, () -> BitmapTable.read(f, e, 16, "t"));
        assertTrue(ex.getMessage().contains("bitmap 'b': table entry 1: all-ones flag"), ex.getMessage());
        assertEquals(0x10008, ex.offset());
    }

    @Test
    void oversizedTableShouldBeRefusedBeforeAllocating() {
        BitmapDirectoryEntry e = new BitmapDirectoryEntry(0x10000, 0x10000, 0, 1, 9, "b", null);
        assertThrows(BlockException.class, () -> BitmapTable.read(MemoryImageFile.ofSize(1), e, 16, "t"));
    }

    @Test
    void dataClustersShouldSkipUnallocatedEntries() {
        long[] table = {0, 0x50000, 1, 0x70000};
        assertArrayEquals(new long[] {0x50000, 0x70000}, BitmapTable.dataClusters(table));
        assertEquals(32, BitmapTable.encode(table).remaining());
    }
}
