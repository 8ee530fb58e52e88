package dev.shear.cli;

import dev.shear.block.ImageFile;
import dev.shear.qcow2.Qcow2Header;
import dev.shear.qcow2.bitmap.BitmapDirectory;
import dev.shear.qcow2.bitmap.BitmapDirectoryEntry;
import dev.shear.qcow2.bitmap.BitmapTable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * What a bitmap's stored data says, read straight from the qcow2 file (header, directory, table, data
 * clusters; qcow2-format.md §Bitmaps) whatever its in_use flag: the bits a flush wrote, seen from
 * outside the server. Test-only.
 */
final class StoredBitmaps {
    private StoredBitmaps() {
    }

    /** The entry of bitmap {@code name}, or null. */
    static BitmapDirectoryEntry entry(Path image, String name) throws IOException {
        try (ImageFile f = ImageFile.open(image, false)) {
            Qcow2Header h = Qcow2Header.read(f, image.toString());
            if (h.bitmapsExtension() == null) {
                return null;
            }
            for (BitmapDirectoryEntry e : BitmapDirectory.read(f, h, image.toString())) {
                if (e.name().equals(name)) {
                    return e;
                }
            }
            return null;
        }
    }

    /** The guest offsets of the dirty granules stored for bitmap {@code name}, ascending. */
    static List<Long> dirtyOffsets(Path image, String name) throws IOException {
        BitmapDirectoryEntry e = entry(image, name);
        if (e == null) {
            throw new IllegalArgumentException(image + ": no stored bitmap '" + name + "'");
        }
        List<Long> out = new ArrayList<>();
        try (ImageFile f = ImageFile.open(image, false)) {
            Qcow2Header h = Qcow2Header.read(f, image.toString());
            int clusterBits = h.clusterBits();
            long[] table = BitmapTable.read(f, e, clusterBits, image.toString());
            long granulesPerCluster = 8L << clusterBits;
            for (int i = 0; i < table.length; i++) {
                long firstGranule = i * granulesPerCluster;
                if (BitmapTable.isAllOnes(table[i])) {
                    for (long g = 0; g < granulesPerCluster; g++) {
                        add(out, firstGranule + g, e.granularityBits(), h.size());
                    }
                } else if (BitmapTable.dataOffset(table[i]) != 0) {
                    ByteBuffer data = ByteBuffer.allocate(1 << clusterBits);
                    f.read(BitmapTable.dataOffset(table[i]), data);
                    for (int b = 0; b < data.capacity(); b++) {
                        for (int bit = 0; bit < 8; bit++) {
                            if ((data.get(b) >> bit & 1) != 0) {   // bit j of byte i: granule 8i + j
                                add(out, firstGranule + 8L * b + bit, e.granularityBits(), h.size());
                            }
                        }
                    }
                }
            }
        }
        return out;
    }

    private static void add(List<Long> out, long granule, int granularityBits, long size) {
        long offset = granule << granularityBits;
        if (offset < size) {
            out.add(offset);
        }
    }
}
