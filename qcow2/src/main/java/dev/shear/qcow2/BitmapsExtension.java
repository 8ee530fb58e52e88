package dev.shear.qcow2;

import java.nio.ByteBuffer;

/**
 * The bitmaps header extension (qcow2-format.md §4.3, dirty-bitmaps.md §2.1): where the bitmap
 * directory is and how many bitmaps it holds. Trusted only while autoclear bit 0 is set
 * ({@link Qcow2Header#bitmapsConsistent()}).
 *
 * @param nbBitmaps       number of directory entries, 1..65535
 * @param directorySize   bytes of the directory, 1..1024 * 65535
 * @param directoryOffset cluster-aligned file offset of the directory
 */
public record BitmapsExtension(int nbBitmaps, long directorySize, long directoryOffset) {
    /** Exact payload length of the extension. */
    public static final int LENGTH = 24;

    /** The 24-byte payload: nb_bitmaps, reserved 0, directory size, directory offset. */
    public byte[] encode() {
        byte[] b = new byte[LENGTH];
        ByteBuffer.wrap(b).putInt(nbBitmaps).putInt(0).putLong(directorySize).putLong(directoryOffset);
        return b;
    }

    /** The extension as it sits in cluster 0. */
    public HeaderExtension toExtension() {
        return new HeaderExtension(HeaderExtension.BITMAPS, encode());
    }
}
