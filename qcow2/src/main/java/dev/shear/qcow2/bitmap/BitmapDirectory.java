package dev.shear.qcow2.bitmap;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import dev.shear.qcow2.BitmapsExtension;
import dev.shear.qcow2.Qcow2Header;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Reads and encodes the bitmap directory (dirty-bitmaps.md §2.2, §3; QEMU bitmap_list_load).
 *
 * <p>Checks: directory size 1..1024 * 65535 bytes; nb_bitmaps 1..65535; entries tile the directory
 * exactly (no partial entry, nothing left over); the entry count equals nb_bitmaps; every entry
 * passes {@link BitmapDirectoryEntry#validate}; names are UTF-8 and unique. Every error names the
 * entry (index, and name once known) and the field.
 */
public final class BitmapDirectory {
    private BitmapDirectory() {
    }

    /**
     * The bitmaps of {@code header}'s image, or an empty list when there is no bitmaps extension or
     * autoclear bit 0 is clear (QEMU then ignores the extension: every bitmap is inconsistent and
     * its clusters leak; callers warn using {@link Qcow2Header#bitmapsConsistent()}).
     */
    public static List<BitmapDirectoryEntry> read(ImageFile file, Qcow2Header header, String resource)
            throws IOException {
        if (!header.bitmapsConsistent()) {
            return List.of();
        }
        BitmapsExtension ext = header.bitmapsExtension();
        checkExtension(ext, header.clusterBits(), resource);
        ByteBuffer dir = ByteBuffer.allocate((int) ext.directorySize());
        file.read(ext.directoryOffset(), dir);
        return decode(dir.flip(), ext, header.size(), header.clusterBits(), resource);
    }

    /** Re-bounds the extension before allocating (the header may have been built by hand). */
    private static void checkExtension(BitmapsExtension ext, int clusterBits, String resource) throws BlockException {
        if (ext.directorySize() <= 0 || ext.directorySize() > BitmapLimits.MAX_DIRECTORY_BYTES) {
            throw BlockException.format(resource, -1, "bitmap_directory_size: %d (expected: 1..%d)",
                    ext.directorySize(), BitmapLimits.MAX_DIRECTORY_BYTES);
        }
        long nb = Integer.toUnsignedLong(ext.nbBitmaps());
        if (nb == 0 || nb > BitmapLimits.MAX_BITMAPS) {
            throw BlockException.format(resource, -1, "nb_bitmaps: %d (expected: 1..%d)", nb,
                    BitmapLimits.MAX_BITMAPS);
        }
        long offset = ext.directoryOffset();
        if (offset <= 0 || (offset & ((1L << clusterBits) - 1)) != 0 || offset > Long.MAX_VALUE - ext.directorySize()) {
            throw BlockException.format(resource, -1,
                    "bitmap_directory_offset: 0x%x (expected: non-zero, cluster-aligned, end below 2^63)", offset);
        }
    }

    /**
     * Decodes the directory in {@code dir} (position to limit, exactly directory_size bytes).
     *
     * @param imageSize   virtual disk size, for the table size check
     * @param clusterBits the image's cluster_bits
     */
    public static List<BitmapDirectoryEntry> decode(ByteBuffer dir, BitmapsExtension ext, long imageSize,
            int clusterBits, String resource) throws BlockException {
        ByteBuffer d = dir.slice();
        long base = ext.directoryOffset();
        int size = d.remaining();
        int nb = ext.nbBitmaps();
        List<BitmapDirectoryEntry> out = new ArrayList<>(Math.min(nb, 1024));
        Set<String> names = new HashSet<>();
        // Walk entry by entry: each must fit whole before its variable part is allocated (the sizes
        // come from disk), and the last must end exactly at directory_size ("Broken bitmap directory").
        int pos = 0;
        while (pos < size) {
            int index = out.size();
            if (size - pos < BitmapLimits.ENTRY_HEADER_BYTES) {
                throw BlockException.format(resource, base + pos,
                        "bitmap %d: %d bytes left in the directory (expected: >= %d, a whole entry)", index,
                        size - pos, BitmapLimits.ENTRY_HEADER_BYTES);
            }
            if (index >= nb) {
                throw BlockException.format(resource, base + pos,
                        "bitmap directory: more than nb_bitmaps %d entries (expected: exactly nb_bitmaps)", nb);
            }
            long tableOffset = d.getLong(pos);
            int tableSize = d.getInt(pos + BitmapDirectoryEntry.TABLE_SIZE);
            int flags = d.getInt(pos + BitmapDirectoryEntry.FLAGS);
            int type = Byte.toUnsignedInt(d.get(pos + BitmapDirectoryEntry.TYPE));
            int granularityBits = Byte.toUnsignedInt(d.get(pos + BitmapDirectoryEntry.GRANULARITY_BITS));
            int nameSize = Short.toUnsignedInt(d.getShort(pos + BitmapDirectoryEntry.NAME_SIZE));
            long extraSize = Integer.toUnsignedLong(d.getInt(pos + BitmapDirectoryEntry.EXTRA_DATA_SIZE));
            // In long: extra_data_size is unsigned 32-bit and could overflow an int sum.
            long entrySize = (BitmapLimits.ENTRY_HEADER_BYTES + extraSize + nameSize + 7) & ~7L;
            if (entrySize > size - pos) {
                throw BlockException.format(resource, base + pos + BitmapDirectoryEntry.EXTRA_DATA_SIZE,
                        "bitmap %d: entry of %d bytes (extra_data_size %d, name_size %d) (expected: <= %d, "
                                + "inside the directory)", index, entrySize, extraSize, nameSize, size - pos);
            }
            int extraAt = pos + BitmapLimits.ENTRY_HEADER_BYTES;
            byte[] extra = new byte[(int) extraSize];
            d.get(extraAt, extra);
            String name = utf8(d, extraAt + (int) extraSize, nameSize, base, index, resource);
            BitmapDirectoryEntry e = new BitmapDirectoryEntry(tableOffset, tableSize, flags, type, granularityBits,
                    name, extra);
            e.validate(imageSize, clusterBits, resource, base + pos);
            // QEMU fails later, when it registers the second bitmap; we fail at the directory.
            if (!names.add(name)) {
                throw BlockException.format(resource, base + pos,
                        "bitmap %d: name '%s' (expected: unique; an earlier bitmap has it)", index, name);
            }
            out.add(e);
            pos += (int) entrySize;
        }
        if (out.size() != nb) {
            throw BlockException.format(resource, base,
                    "nb_bitmaps: %d (expected: %d, the entries in the directory)", nb, out.size());
        }
        return List.copyOf(out);
    }

    private static String utf8(ByteBuffer d, int at, int length, long base, int index, String resource)
            throws BlockException {
        try {
            return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(d.slice(at, length)).toString();
        } catch (CharacterCodingException e) {
            throw BlockException.format(resource, base + at, "bitmap %d: name: %d bytes of invalid UTF-8 "
                    + "(expected: UTF-8)", index, length);
        }
    }

    /**
     * Encodes entries as a directory for a writer: no gaps, each entry zero-padded to 8. The writer
     * stores it in new clusters and then points the header at it (dirty-bitmaps.md §4.3).
     */
    public static ByteBuffer encode(List<BitmapDirectoryEntry> entries) {
        long total = 0;
        for (BitmapDirectoryEntry e : entries) {
            total += e.encodedSize();
        }
        if (total > BitmapLimits.MAX_DIRECTORY_BYTES || entries.size() > BitmapLimits.MAX_BITMAPS) {
            throw new IllegalArgumentException("bitmap directory: " + entries.size() + " entries, " + total
                    + " bytes (expected: <= 65535 entries, <= " + BitmapLimits.MAX_DIRECTORY_BYTES + " bytes)");
        }
        ByteBuffer b = ByteBuffer.allocate((int) total);
        for (BitmapDirectoryEntry e : entries) {
            int start = b.position();
            byte[] name = e.name().getBytes(StandardCharsets.UTF_8);
            byte[] extra = e.extraData();
            if (name.length > 0xffff) {
                throw new IllegalArgumentException("bitmap name: " + name.length + " bytes (expected: <= 65535)");
            }
            b.putLong(e.tableOffset()).putInt(e.tableSize()).putInt(e.flags()).put((byte) e.type())
                    .put((byte) e.granularityBits()).putShort((short) name.length).putInt(extra.length)
                    .put(extra).put(name);
            b.position(start + (int) e.encodedSize());
        }
        return b.flip();
    }
}
