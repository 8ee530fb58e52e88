package dev.shear.qcow2;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/**
 * Creates qcow2 images as {@code qemu-img create -f qcow2} does (qcow2-format.md §14; QEMU
 * {@code qcow2_co_create}): cluster 0 header (v3: header_length 112, the feature name table for
 * clusters larger than 4 KiB, backing format extension, backing file name after the end marker),
 * cluster 1 the refcount table, cluster 2 the refcount block, then the L1 table; the file ends right
 * after the L1 entries. When one refcount block cannot cover these (tiny clusters, huge disks) the
 * table and blocks grow to the fixed point, as QEMU's {@code qcow2_refcount_metadata_size}.
 * Preallocation then runs through the write engine, so it obeys the same ordering.
 */
public final class Qcow2Creator {
    private Qcow2Creator() {
    }

    /** Creates (or truncates and overwrites) {@code path}. */
    public static void create(Path path, Qcow2CreateOptions o) throws IOException {
        String name = path.toString();
        int clusterBits = Integer.numberOfTrailingZeros(o.clusterSize());
        long cs = o.clusterSize();
        int refcountOrder = Integer.numberOfTrailingZeros(o.refcountBits());
        int l2Bits = clusterBits - (o.extendedL2() ? 4 : 3);
        long reach = 1L << (clusterBits + l2Bits);
        long l1Size = (o.sizeBytes() + reach - 1) / reach;
        if (l1Size > Qcow2Limits.MAX_L1_ENTRIES) {
            throw new BlockException(BlockErrorKind.INVALID_ARGUMENT, name, -1, String.format(
                    "size: %d (expected: an L1 table of at most 32 MiB; use a larger cluster_size)", o.sizeBytes()));
        }
        long l1Clusters = (l1Size * 8 + cs - 1) / cs;
        long blockEntries = 1L << Refcounts.refcountBlockBits(clusterBits, refcountOrder);
        long tableClusters = 1;
        long blocks = 1;
        while (true) {
            long total = 1 + tableClusters + blocks + l1Clusters;
            long needBlocks = (total + blockEntries - 1) / blockEntries;
            long needTable = (needBlocks * 8 + cs - 1) / cs;
            if (needBlocks <= blocks && needTable <= tableClusters) {
                break;
            }
            blocks = Math.max(blocks, needBlocks);
            tableClusters = Math.max(tableClusters, needTable);
        }
        long tableOffset = cs;
        long firstBlock = 1 + tableClusters;
        long l1Offset = (firstBlock + blocks) * cs;
        long used = firstBlock + blocks + l1Clusters;

        Qcow2Header header = header(o, clusterBits, refcountOrder, (int) l1Size, l1Offset, tableOffset,
                (int) tableClusters);
        ByteBuffer cluster0;
        try {
            cluster0 = header.encode((int) cs);
        } catch (IllegalArgumentException e) {
            throw BlockException.invalid(name, -1, "header: %s", e.getMessage());
        }
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            writeFully(ch, 0, cluster0);
            ByteBuffer table = ByteBuffer.allocate((int) (tableClusters * cs));
            for (long b = 0; b < blocks; b++) {
                table.putLong((int) (b * 8), (firstBlock + b) * cs);
                ByteBuffer block = ByteBuffer.allocate((int) cs);
                for (long i = 0; i < blockEntries; i++) {
                    if (b * blockEntries + i < used) {
                        Refcounts.set(block, refcountOrder, (int) i, 1);
                    }
                }
                writeFully(ch, (firstBlock + b) * cs, block);
            }
            writeFully(ch, tableOffset, table);
            if (l1Size > 0) {
                writeFully(ch, l1Offset, ByteBuffer.allocate((int) (l1Size * 8)));
            }
            ch.force(true);
        } catch (IOException e) {
            throw BlockException.io(name, -1, "create", e);
        }
        if (o.preallocation() != Qcow2CreateOptions.Preallocation.OFF && o.sizeBytes() > 0) {
            ImageFile file = ImageFile.open(path, true);
            Qcow2Image image;
            try {
                // No backing file with preallocation (refused by the options), so nothing else is opened.
                image = Qcow2Image.open(file, Qcow2OpenOptions.defaults().withReadOnly(false));
            } catch (IOException | RuntimeException e) {
                file.close();
                throw e;
            }
            try (image) {
                image.preallocate(o.preallocation() == Qcow2CreateOptions.Preallocation.FULL);
            }
        }
    }

    private static Qcow2Header header(Qcow2CreateOptions o, int clusterBits, int refcountOrder, int l1Size,
            long l1Offset, long tableOffset, int tableClusters) {
        List<HeaderExtension> ext = new ArrayList<>();
        if (o.backingFormat() != null && o.backingFile() != null) {
            ext.add(new HeaderExtension(HeaderExtension.BACKING_FORMAT,
                    o.backingFormat().getBytes(StandardCharsets.UTF_8)));
        }
        if (o.version() >= 3 && o.clusterSize() > 4096) {
            ext.add(HeaderEncoder.featureTable(FeatureBits.qemuFeatureTable()));   // as QEMU 7.2 (§4.1)
        }
        long incompat = 0;
        if (o.compressionType() != 0) {
            incompat |= FeatureBits.INCOMPAT_COMPRESSION;
        }
        if (o.extendedL2()) {
            incompat |= FeatureBits.INCOMPAT_EXTL2;
        }
        long compat = o.lazyRefcounts() ? FeatureBits.COMPAT_LAZY_REFCOUNTS : 0;
        int headerLength = o.version() == 2 ? Qcow2Limits.V2_HEADER_LENGTH : Qcow2Limits.V3_HEADER_LENGTH;
        return new Qcow2Header(o.version(), 0, 0, clusterBits, o.sizeBytes(), 0, l1Size, l1Offset, tableOffset,
                tableClusters, 0, 0, incompat, compat, 0, refcountOrder, headerLength, o.compressionType(), null,
                ext, o.backingFile());
    }

    private static void writeFully(FileChannel ch, long position, ByteBuffer b) throws IOException {
        long pos = position;
        while (b.hasRemaining()) {
            pos += ch.write(b, pos);
        }
    }
}
