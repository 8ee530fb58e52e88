package dev.shear.qcow2.bitmap;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** One row per QEMU check_dir_entry / load_bitmap condition (dirty-bitmaps.md §3). */
class BitmapDirectoryEntryTest {
    private static final long SIZE = 64L << 20;

    private static BitmapDirectoryEntry b0(long tableOffset, int tableSize, int flags, int type, int gran,
            String name) {
        return new BitmapDirectoryEntry(tableOffset, tableSize, flags, type, gran, name, null);
    }

    static Stream<Arguments> faults() {
        return Stream.of(
                Arguments.of(b0(0xb0000, 1, 2, 2, 16, "b0"), "bitmap 'b0': type: 2 (expected: 1"),
                Arguments.of(b0(0xb0000, 1, 2, 0, 16, "b0"), "type: 0"),
                Arguments.of(b0(0xb0000, 1, 2, 1, 8, "b0"), "granularity_bits: 8 (expected: 9..31)"),
                Arguments.of(b0(0xb0000, 1, 2, 1, 32, "b0"), "granularity_bits: 32"),
                Arguments.of(b0(0xb0000, 1, 2, 1, 16, ""), "name_size: 0 (expected: 1..1023)"),
                Arguments.of(b0(0xb0000, 1, 2, 1, 16, "n".repeat(1024)), "name_size: 1024"),
                Arguments.of(b0(0xb0000, 1, 8, 1, 16, "b0"), "flags: 0x8 (expected: only bits 0-2"),
                Arguments.of(b0(0, 1, 2, 1, 16, "b0"), "bitmap_table_offset: 0x0 (expected: non-zero"),
                Arguments.of(b0(0xb0200, 1, 2, 1, 16, "b0"), "bitmap_table_offset: 0xb0200"),
                Arguments.of(b0(0xb0000, 0, 2, 1, 16, "b0"), "bitmap_table_size: 0 (expected: 1..134217728)"),
                Arguments.of(b0(0xb0000, 0x8000001, 2, 1, 16, "b0"), "bitmap_table_size: 134217729"),
                Arguments.of(b0(0xb0000, -1, 2, 1, 16, "b0"), "bitmap_table_size: 4294967295"),
                Arguments.of(b0(0xb0000, 8193, 3, 1, 16, "b0"), "bitmap_table_size: 8193 (expected: <= 8192 "
                        + "clusters, 512 MiB"),
                Arguments.of(b0(0x7fffffffffff0000L, 8192, 3, 1, 16, "b0"), "bitmap_table_offset: 0x7fffffffffff0000 "
                        + "(expected: offset + 65536 bytes"),
                Arguments.of(b0(0xb0000, 2, 2, 1, 16, "b0"), "bitmap_table_size: 2 (expected: 1 for image size "
                        + "67108864 at granularity 65536)"));
    }

    @ParameterizedTest(name = "[{index}] {1}")
    @MethodSource("faults")
    void invalidEntryShouldBeRefusedNamingBitmapAndField(BitmapDirectoryEntry e, String message) {
        BlockException ex = assertThrows(BlockException.class, () -> e.validate(SIZE, 16, "t", 0xc0000));
        assertEquals(BlockErrorKind.INVALID_FORMAT, ex.kind());
        assertTrue(ex.getMessage().contains(message), ex.getMessage());
    }

    @Test
    void validEntryShouldPass() {
        BitmapDirectoryEntry e = b0(0xb0000, 1, 2, 1, 16, "b0");
        assertDoesNotThrow(() -> e.validate(SIZE, 16, "t", 0));
        assertTrue(e.auto());
        assertFalse(e.inUse());
        assertTrue(e.usable());
        assertEquals(65536, e.granularity());
        assertEquals(32, e.encodedSize());
    }

    @Test
    void inUseEntryMayHaveStaleTableSize() {
        // After a resize that was never stored, the table size no longer matches: only in_use allows it.
        BitmapDirectoryEntry e = b0(0xb0000, 2, 3, 1, 16, "b0");
        assertDoesNotThrow(() -> e.validate(SIZE, 16, "t", 0));
        assertFalse(e.usable());
    }

    @Test
    void extraDataShouldBeAcceptedButUsableOnlyWhenCompatible() throws BlockException {
        BitmapDirectoryEntry plain = new BitmapDirectoryEntry(0xb0000, 1, 2, 1, 16, "b0", new byte[] {7});
        BitmapDirectoryEntry compatible = new BitmapDirectoryEntry(0xb0000, 1, 6, 1, 16, "b0", new byte[] {7});
        plain.validate(SIZE, 16, "t", 0);
        compatible.validate(SIZE, 16, "t", 0);
        assertFalse(plain.usable());
        assertTrue(compatible.usable());
        assertEquals(plain, new BitmapDirectoryEntry(0xb0000, 1, 2, 1, 16, "b0", new byte[] {7}));
    }
}
