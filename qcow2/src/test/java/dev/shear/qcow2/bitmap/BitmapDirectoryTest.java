package dev.shear.qcow2.bitmap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockException;
import dev.shear.qcow2.MemoryImageFile;
import dev.shear.qcow2.Qcow2Header;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Bitmap directory walk (dirty-bitmaps.md §2.2, §3). */
class BitmapDirectoryTest {
    private static List<BitmapDirectoryEntry> read(int nb, ByteBuffer dir) throws IOException {
        Qcow2Header h = BitmapFixtures.header(nb, dir.remaining(), true);
        MemoryImageFile f = BitmapFixtures.image(h, dir);
        return BitmapDirectory.read(f, Qcow2Header.read(f, "t"), "t");
    }

    private static ByteBuffer twoEntries(String second) {
        BitmapDirectoryEntry other = new BitmapDirectoryEntry(0xa0000, 1, 0, 1, 16, second, null);
        return ByteBuffer.allocate(64).put(BitmapFixtures.entryB0()).put(BitmapDirectory.encode(List.of(other)))
                .flip();
    }

    @Test
    void qemuEntryShouldDecode() throws IOException {
        List<BitmapDirectoryEntry> list = read(1, BitmapFixtures.entryB0());
        assertEquals(List.of(new BitmapDirectoryEntry(0xb0000, 1, 2, 1, 16, "b0", null)), list);
    }

    @Test
    void encodeShouldReproduceQemuEntry() {
        BitmapDirectoryEntry e = new BitmapDirectoryEntry(0xb0000, 1, 2, 1, 16, "b0", null);
        assertEquals(BitmapFixtures.entryB0(), BitmapDirectory.encode(List.of(e)));
    }

    @Test
    void twoEntriesShouldRoundTrip() throws IOException {
        List<BitmapDirectoryEntry> list = read(2, twoEntries("second"));
        assertEquals("second", list.get(1).name());
        assertEquals(twoEntries("second"), BitmapDirectory.encode(list));
    }

    @Test
    void inconsistentExtensionShouldYieldNoBitmaps() throws IOException {
        Qcow2Header h = BitmapFixtures.header(1, 32, false);
        MemoryImageFile f = BitmapFixtures.image(h, BitmapFixtures.entryB0());
        assertEquals(List.of(), BitmapDirectory.read(f, Qcow2Header.read(f, "t"), "t"));
    }

    @Test
    void moreEntriesThanNbBitmapsShouldBeRefused() {
        BlockException e = assertThrows(BlockException.class, () -> read(1, twoEntries("x")));
        assertTrue(e.getMessage().contains("more than nb_bitmaps 1 entries"), e.getMessage());
    }

    @Test
    void fewerEntriesThanNbBitmapsShouldBeRefused() {
        BlockException e = assertThrows(BlockException.class, () -> read(2, BitmapFixtures.entryB0()));
        assertTrue(e.getMessage().contains("nb_bitmaps: 2 (expected: 1, the entries in the directory)"),
                e.getMessage());
    }

    @Test
    void partialEntryAtEndShouldBeRefused() {
        ByteBuffer dir = ByteBuffer.allocate(40).put(BitmapFixtures.entryB0()).clear();
        BlockException e = assertThrows(BlockException.class, () -> read(2, dir));
        assertTrue(e.getMessage().contains("bitmap 1: 8 bytes left in the directory (expected: >= 24"),
                e.getMessage());
    }

    @Test
    void entryRunningPastDirectoryShouldBeRefused() {
        ByteBuffer dir = BitmapFixtures.entryB0();
        dir.putShort(18, (short) 100);
        BlockException e = assertThrows(BlockException.class, () -> read(1, dir));
        assertTrue(e.getMessage().contains("bitmap 0: entry of 128 bytes (extra_data_size 0, name_size 100)"),
                e.getMessage());
    }

    @Test
    void hugeExtraDataSizeShouldBeRefusedBeforeAllocating() {
        ByteBuffer dir = BitmapFixtures.entryB0();
        dir.putInt(20, -1);
        BlockException e = assertThrows(BlockException.class, () -> read(1, dir));
        assertTrue(e.getMessage().contains("extra_data_size 4294967295"), e.getMessage());
    }

    @Test
    void duplicateNamesShouldBeRefused() {
        BlockException e = assertThrows(BlockException.class, () -> read(2, twoEntries("b0")));
        assertTrue(e.getMessage().contains("bitmap 1: name 'b0' (expected: unique"), e.getMessage());
    }

    @Test
    void invalidUtf8NameShouldBeRefused() {
        ByteBuffer dir = BitmapFixtures.entryB0();
        dir.put(24, (byte) 0xfe);
        BlockException e = assertThrows(BlockException.class, () -> read(1, dir));
        assertTrue(e.getMessage().contains("bitmap 0: name: 2 bytes of invalid UTF-8"), e.getMessage());
    }

    @Test
    void invalidEntryShouldBeNamedInDirectoryRead() {
        ByteBuffer dir = BitmapFixtures.entryB0();
        dir.put(17, (byte) 40);
        BlockException e = assertThrows(BlockException.class, () -> read(1, dir));
        assertTrue(e.getMessage().contains("bitmap 'b0': granularity_bits: 40"), e.getMessage());
        assertEquals(BitmapFixtures.DIRECTORY + 17, e.offset());
    }

    @Test
    void tableShouldBeReadThroughDirectoryEntry() throws IOException {
        Qcow2Header h = BitmapFixtures.header(1, 32, true);
        MemoryImageFile f = BitmapFixtures.image(h, BitmapFixtures.entryB0());
        BitmapDirectoryEntry e = BitmapDirectory.read(f, h, "t").get(0);
        long[] table = BitmapTable.read(f, e, 16, "t");
        assertArrayEquals(new long[] {BitmapFixtures.DATA}, table);
        assertArrayEquals(new long[] {BitmapFixtures.DATA}, BitmapTable.dataClusters(table));
    }
}
