package dev.shear.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Snapshot table read/validate/encode (qcow2-format.md §8). */
class SnapshotTableTest {
    private static final long TABLE = 0x70000;

    /** One entry as QEMU writes it (E = 24), byte by byte; 72 bytes with padding. */
    static ByteBuffer entry(String id, String name) {
        byte[] idBytes = id.getBytes(StandardCharsets.UTF_8);
        byte[] nameBytes = name.getBytes(StandardCharsets.UTF_8);
        int raw = 40 + 24 + idBytes.length + nameBytes.length;
        ByteBuffer b = ByteBuffer.allocate((raw + 7) & ~7);
        b.putLong(0x60000); // 0  l1_table_offset: cluster 6
        b.putInt(1); // 8  l1_size
        b.putShort((short) idBytes.length); // 12 id_str_size
        b.putShort((short) nameBytes.length); // 14 name_size
        b.putInt(0x65000000); // 16 date_sec
        b.putInt(123); // 20 date_nsec
        b.putLong(5_000_000_000L); // 24 vm_clock_nsec: 5 s of guest time
        b.putInt(0); // 32 vm_state_size: no VM state
        b.putInt(24); // 36 extra_data_size
        b.putLong(0); // 40 vm_state_size_large
        b.putLong(64L << 20); // 48 disk_size
        b.putLong(-1); // 56 icount: record/replay disabled
        b.put(idBytes).put(nameBytes); // 64 id, then name, then zero padding to 8
        return b.clear();
    }

    private static MemoryImageFile image(int nb, ByteBuffer... entries) {
        ByteBuffer c0 = HeaderFixtures.cluster(HeaderFixtures.QEMU_64M_V3);
        c0.putInt(0x3c, nb).putLong(0x40, TABLE);
        MemoryImageFile f = MemoryImageFile.ofSize(0x30008).poke(0, c0);
        long at = TABLE;
        for (ByteBuffer e : entries) {
            f.poke(at, e);
            at += e.remaining();
        }
        return f;
    }

    private static List<Qcow2Snapshot> read(MemoryImageFile f) throws IOException {
        return SnapshotTable.read(f, Qcow2Header.read(f, "t"), "t");
    }

    @Test
    void qemuStyleEntriesShouldDecode() throws IOException {
        List<Qcow2Snapshot> s = read(image(2, entry("1", "snap1"), entry("2", "snap2")));
        assertEquals(2, s.size());
        Qcow2Snapshot first = s.get(0);
        assertEquals(new Qcow2Snapshot("1", "snap1", 0x60000, 1, 0x65000000, 123, 5_000_000_000L, 0, 64L << 20, -1,
                new byte[0]), first);
        assertEquals("snap2", s.get(1).name());
    }

    @Test
    void encodeShouldReproduceQemuEntriesAndRoundTrip() throws IOException {
        MemoryImageFile f = image(2, entry("1", "snap1"), entry("2", "snap2"));
        List<Qcow2Snapshot> s = read(f);
        ByteBuffer expected = ByteBuffer.allocate(144).put(entry("1", "snap1")).put(entry("2", "snap2")).flip();
        assertEquals(expected, SnapshotTable.encode(s));
    }

    @Test
    void unknownExtraDataShouldBePreservedOnRoundTrip() throws IOException {
        Qcow2Snapshot s = new Qcow2Snapshot("7", "with-extra", 0x80000, 3, 1, 2, 3, 1L << 33, 1L << 30, 99,
                new byte[] {1, 2, 3, 4, 5});
        Qcow2Snapshot t = new Qcow2Snapshot("8", "\u00e9t\u00e9", 0x90000, 0, 0, 0, 0, 0, 0, -1, null);
        ByteBuffer table = SnapshotTable.encode(List.of(s, t));
        assertEquals(0, table.remaining() % 8);
        assertEquals(List.of(s, t), read(image(2, table)));
    }

    @Test
    void findShouldPreferIdOverName() {
        Qcow2Snapshot a = new Qcow2Snapshot("1", "2", 0, 0, 0, 0, 0, 0, 0, -1, null);
        Qcow2Snapshot b = new Qcow2Snapshot("2", "x", 0, 0, 0, 0, 0, 0, 0, -1, null);
        assertSame(b, Qcow2Snapshot.find(List.of(a, b), "2"));
        assertSame(b, Qcow2Snapshot.find(List.of(a, b), "x"));
        assertSame(a, Qcow2Snapshot.find(List.of(a, b), "1"));
        assertNull(Qcow2Snapshot.find(List.of(a, b), "nope"));
    }

    static Stream<Arguments> mutations() {
        return Stream.of(
                Arguments.of(36, 4, 1025L, "snapshot 0: extra_data_size: 1025 (expected: <= 1024)"),
                Arguments.of(36, 4, 8L, "snapshot 0: extra_data_size: 8 (expected: >= 16 in a version 3 image)"),
                Arguments.of(0, 8, 0x60200L, "snapshot 0: l1_table_offset: 0x60200 (expected: aligned"),
                Arguments.of(0, 8, 0xffffffffffff0000L, "snapshot 0: l1_table_offset: 0xffffffffffff0000 (expected: "
                        + "offset + 8 bytes"),
                Arguments.of(8, 4, 4194305L, "snapshot 0: l1_size: 4194305 (expected: <= 4194304)"),
                Arguments.of(64, 1, 0xffL, "snapshot 0: id: 1 bytes of invalid UTF-8"),
                Arguments.of(65, 1, 0xc3L, "snapshot 0: name: 5 bytes of invalid UTF-8"));
    }

    @ParameterizedTest(name = "[{index}] {3}")
    @MethodSource("mutations")
    void mutatedEntryFieldShouldBeRefused(int offset, int width, long value, String message) {
        ByteBuffer e = entry("1", "snap1");
        switch (width) {
            case 1 -> e.put(offset, (byte) value);
            case 4 -> e.putInt(offset, (int) value);
            default -> e.putLong(offset, value);
        }
        BlockException ex = assertThrows(BlockException.class, () -> read(image(1, e)));
        assertEquals(BlockErrorKind.INVALID_FORMAT, ex.kind());
        assertTrue(ex.getMessage().contains(message), ex.getMessage());
    }

    @Test
    void tableBeyond64MiBShouldBeRefusedBeforeReading() {
        // 65536 entries of 40 + 24 + 2 * 65535 bytes would be ~8 GiB; the bound stops it early.
        ByteBuffer e = entry("1", "snap1");
        e.putShort(12, (short) 0xffff).putShort(14, (short) 0xffff);
        int entrySize = (40 + 24 + 2 * 0xffff + 7) & ~7; // 131136 bytes on disk
        byte[] file = new byte[(int) TABLE + 520 * entrySize];
        for (int i = 0; i < 520; i++) {
            e.get(0, file, (int) TABLE + i * entrySize, 72);
        }
        MemoryImageFile f = new MemoryImageFile(file).poke(0, HeaderFixtures.cluster(HeaderFixtures.QEMU_64M_V3)
                .putInt(0x3c, 65536).putLong(0x40, TABLE));
        BlockException ex = assertThrows(BlockException.class, () -> read(f));
        assertTrue(ex.getMessage().contains("snapshot table size:"), ex.getMessage());
        assertTrue(ex.getMessage().contains("(expected: <= 67108864)"), ex.getMessage());
    }

    @Test
    void encodeShouldRefuseUnknownExtraWithoutDiskSize() {
        Qcow2Snapshot s = new Qcow2Snapshot("1", "a", 0, 0, 0, 0, 0, 0, -1, -1, new byte[] {1});
        assertThrows(IllegalArgumentException.class, () -> SnapshotTable.encode(List.of(s)));
    }
}
