package dev.shear.qcow2;

import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;

/**
 * Images for {@link Qcow2CheckTest}: built with {@link Qcow2TestImage}, then damaged by poking bytes
 * at offsets taken from the fixture's layout (QEMU iotest 060 style). The same files were checked by
 * hand with QEMU 7.2's {@code qemu-img check}; the tests encode what it reported.
 */
final class Qcow2CheckFixtures {
    static final long COPIED = 1L << 63;

    private Qcow2CheckFixtures() {
    }

    /** A cluster of {@code value} bytes. */
    static byte[] fill(int clusterSize, int value) {
        byte[] b = new byte[clusterSize];
        Arrays.fill(b, (byte) value);
        return b;
    }

    /**
     * The base image of the damage tests (the layout of a QEMU image after
     * {@code write -P 1 0 64k; write -P 2 1M 128k}): 64 MiB, 64 KiB clusters, guest clusters 0, 16
     * and 17 allocated in one L2 table.
     */
    static Qcow2TestImage base() {
        return Qcow2TestImage.create(64 << 20)
                .write(0, fill(65536, 1))
                .write(1 << 20, fill(131072, 2));
    }

    static long readLong(Path p, long offset) throws IOException {
        try (FileChannel ch = FileChannel.open(p)) {
            ByteBuffer b = ByteBuffer.allocate(8);
            ch.read(b, offset);
            return b.getLong(0);
        }
    }

    static void pokeLong(Path p, long offset, long value) throws IOException {
        poke(p, offset, ByteBuffer.allocate(8).putLong(0, value));
    }

    static void pokeShort(Path p, long offset, int value) throws IOException {
        poke(p, offset, ByteBuffer.allocate(2).putShort(0, (short) value));
    }

    static void poke(Path p, long offset, ByteBuffer bytes) throws IOException {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
            while (bytes.hasRemaining()) {
                ch.write(bytes, offset + bytes.position());
            }
        }
    }

    /** Offset of the first refcount block (refcount table entry 0). */
    static long firstRefcountBlock(Path p, Qcow2TestImage.Layout layout) throws IOException {
        return readLong(p, layout.refcountTableOffset()) & OnDiskRefcounts.REFT_OFFSET_MASK;
    }

    /** Sets the 16-bit refcount of host cluster {@code cluster} (first refcount block only). */
    static void setRefcount16(Path p, Qcow2TestImage.Layout layout, long cluster, int value) throws IOException {
        pokeShort(p, firstRefcountBlock(p, layout) + 2 * cluster, value);
    }

    /** Offset of the L2 entry of guest cluster {@code guestCluster} (8-byte entries, first L2 only). */
    static long l2EntryOffset(Qcow2TestImage.Layout layout, long guestCluster) {
        return layout.l2Offsets().get(0L) + 8 * guestCluster;
    }

    /** Runs the check on {@code p}. */
    static CheckResult check(Path p) throws IOException {
        try (ImageFile f = ImageFile.open(p, false)) {
            return Qcow2Check.check(f, p.getFileName().toString());
        }
    }
}
