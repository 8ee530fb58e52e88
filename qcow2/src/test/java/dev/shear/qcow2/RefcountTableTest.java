package dev.shear.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;
import org.junit.jupiter.api.Test;

/** Refcount table decoding and lookup (qcow2-format.md §5.1). */
class RefcountTableTest {
    private static MemoryImageFile imageWithTable(long... entries) throws BlockException {
        ByteBuffer c0 = HeaderFixtures.cluster(HeaderFixtures.QEMU_64M_V3);
        ByteBuffer table = ByteBuffer.allocate(8 * entries.length);
        for (long e : entries) {
            table.putLong(e); // refcount table at 0x10000 (cluster 1)
        }
        return MemoryImageFile.ofSize(0x30008).poke(0, c0).poke(0x10000, table.flip());
    }

    @Test
    void qemuLayoutShouldMapClusterIndexToBlock() throws IOException {
        MemoryImageFile f = imageWithTable(0x20000L); // fresh QEMU image: one block in cluster 2
        Qcow2Header h = Qcow2Header.read(f, "t");
        RefcountTable t = RefcountTable.read(f, h, "t");
        assertEquals(8192, t.size()); // one 64 KiB cluster of entries
        assertEquals(15, t.refcountBlockBits());
        assertEquals(0x20000, t.refcountBlockOffset(0));
        assertEquals(0x20000, t.refcountBlockOffset(32767));
        assertEquals(0, t.refcountBlockOffset(32768)); // table entry 1 is empty
        assertEquals(0, t.refcountBlockOffset(1L << 40)); // past the table
        assertEquals(5, t.blockIndex(32773));
        assertEquals(1, t.tableIndex(32773));
        assertEquals(8192L << 15, t.coveredClusters());
        assertEquals(ByteBuffer.allocate(8 * 8192).putLong(0x20000).clear(), t.encode());
    }

    @Test
    void entryWithReservedBitsShouldBeRefusedNamingIndex() throws IOException {
        MemoryImageFile f = imageWithTable(0x20000L, 0x30001L);
        Qcow2Header h = Qcow2Header.read(f, "t");
        BlockException e = assertThrows(BlockException.class, () -> RefcountTable.read(f, h, "t"));
        assertEquals(BlockErrorKind.INVALID_FORMAT, e.kind());
        assertTrue(e.getMessage().contains("refcount table entry 1: 0x0000000000030001 has reserved bits 0x1"),
                e.getMessage());
        assertEquals(0x10008, e.offset());
    }

    @Test
    void unalignedBlockOffsetShouldBeRefused() throws IOException {
        MemoryImageFile f = imageWithTable(0x20200L);
        Qcow2Header h = Qcow2Header.read(f, "t");
        BlockException e = assertThrows(BlockException.class, () -> RefcountTable.read(f, h, "t"));
        assertTrue(e.getMessage().contains("refcount table entry 0: 0x20200 (expected: cluster-aligned"),
                e.getMessage());
    }
}
