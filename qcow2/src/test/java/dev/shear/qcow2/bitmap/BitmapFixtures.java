package dev.shear.qcow2.bitmap;

import dev.shear.block.BlockException;
import dev.shear.qcow2.BitmapsExtension;
import dev.shear.qcow2.HeaderExtension;
import dev.shear.qcow2.MemoryImageFile;
import dev.shear.qcow2.Qcow2Header;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

/**
 * The observed bitmap of dirty-bitmaps.md §2.4: 64 MiB disk, 64 KiB clusters and granularity,
 * one bitmap "b0" (auto), table at 0xb0000 with one entry, data cluster at 0x50000.
 */
final class BitmapFixtures {
    static final long DIRECTORY = 0xc0000;
    static final long TABLE = 0xb0000;
    static final long DATA = 0x50000;

    /** Directory entry bytes for "b0", as QEMU 7.2 wrote them. */
    static final String ENTRY_B0 = ""
            + "00000000000b0000" // 0  bitmap_table_offset 0xb0000
            + "00000001" // 8  bitmap_table_size 1
            + "00000002" // 12 flags: auto
            + "01" // 16 type 1: dirty tracking
            + "10" // 17 granularity_bits 16: 64 KiB
            + "0002" // 18 name_size 2
            + "00000000" // 20 extra_data_size 0
            + "6230" // 24 name "b0"
            + "000000000000"; // 26 padding to 32

    private BitmapFixtures() {
    }

    static ByteBuffer entryB0() {
        return ByteBuffer.wrap(HexFormat.of().parseHex(ENTRY_B0));
    }

    /** A 64 MiB, 64 KiB-cluster v3 header with the bitmaps extension and autoclear bit 0. */
    static Qcow2Header header(int nbBitmaps, long directorySize, boolean consistent) throws BlockException {
        Qcow2Header base = new Qcow2Header(3, 0, 0, 16, 64L << 20, 0, 1, 0x30000, 0x10000, 1, 0, 0, 0, 0,
                consistent ? 1 : 0, 4, 112, 0, null, List.of(), null);
        List<HeaderExtension> ext = new ArrayList<>();
        ext.add(new BitmapsExtension(nbBitmaps, directorySize, DIRECTORY).toExtension());
        return base.withExtensions(ext);
    }

    /** The image file with {@code directory} at 0xc0000 and the one-entry table at 0xb0000. */
    static MemoryImageFile image(Qcow2Header header, ByteBuffer directory) {
        ByteBuffer table = ByteBuffer.allocate(8).putLong(0, DATA);
        return MemoryImageFile.ofSize(0xd0000).poke(0, header.encode(65536)).poke(DIRECTORY, directory)
                .poke(TABLE, table);
    }
}
