package dev.shear.qcow2;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Rebuilds the refcount structure of a dirty image from its tables, the repair QEMU runs when it opens
 * a dirty (lazy refcounts, unclean close) image read-write (qcow2-format.md §3.1, §10 "Lazy refcounts";
 * QEMU {@code qcow2_check_refcounts} with fixes, {@code rebuild_refcount_structure}).
 *
 * <p>Crash safety: the new refcount blocks and table are written to clusters past the end of the file
 * and synced; only then is the header switched to them (one write of cluster 0, dirty bit cleared) and
 * synced. Until that header write the old structure is in force and the dirty bit still says "rebuild";
 * after it, the old table and blocks are simply unreferenced clusters with refcount 0 (free space).
 *
 * <p>On entry: the header's autoclear bits no longer claim bitmaps we do not count (the caller cleared
 * them durably), so that nothing the new structure calls free is still in use.
 */
final class RefcountRebuild {
    private RefcountRebuild() {
    }

    /** Rebuilds and returns the new header (written and synced). */
    static Qcow2Header rebuild(ImageFile file, Qcow2Header header, String resource) throws IOException {
        InMemoryRefcounts computed = Qcow2Check.referencesForRebuild(file, resource);
        int clusterBits = header.clusterBits();
        long clusterSize = 1L << clusterBits;
        int order = header.refcountOrder();
        long blockEntries = 1L << Refcounts.refcountBlockBits(clusterBits, order);
        long used = computed.size();
        long blocks = 1;
        long tableClusters = 1;
        while (true) {
            long total = used + blocks + tableClusters;
            long needBlocks = (total + blockEntries - 1) / blockEntries;
            long needTable = (needBlocks * 8 + clusterSize - 1) / clusterSize;
            if (needBlocks <= blocks && needTable <= tableClusters) {
                break;
            }
            blocks = Math.max(blocks, needBlocks);
            tableClusters = Math.max(tableClusters, needTable);
        }
        if (tableClusters * clusterSize > Qcow2Limits.MAX_REFTABLE_BYTES) {
            throw BlockException.unsupported(resource, -1, "refcount table: %d clusters (expected: <= 8 MiB)",
                    tableClusters);
        }
        long firstBlock = used;
        long tableStart = used + blocks;
        long metaEnd = tableStart + tableClusters;
        long[] table = new long[(int) (tableClusters * clusterSize / 8)];
        for (long b = 0; b < blocks; b++) {
            ByteBuffer block = ByteBuffer.allocate((int) clusterSize);
            for (long i = 0; i < blockEntries; i++) {
                long k = b * blockEntries + i;
                long v = k < used ? computed.get(k) : k < metaEnd ? 1 : 0;
                if (v != 0) {
                    Refcounts.set(block, order, (int) i, v);
                }
            }
            long off = (firstBlock + b) << clusterBits;
            write(file, off, block, resource);
            table[(int) b] = off;
        }
        ByteBuffer t = ByteBuffer.allocate(table.length * 8);
        t.asLongBuffer().put(table);
        write(file, tableStart << clusterBits, t, resource);
        file.sync();
        Qcow2Header h = header;
        Qcow2Header rebuilt = new Qcow2Header(h.version(), h.backingFileOffset(), h.backingFileSize(),
                h.clusterBits(), h.size(), h.cryptMethod(), h.l1Size(), h.l1TableOffset(), tableStart << clusterBits,
                (int) tableClusters, h.nbSnapshots(), h.snapshotsOffset(),
                h.incompatibleFeatures() & ~FeatureBits.INCOMPAT_DIRTY, h.compatibleFeatures(),
                h.autoclearFeatures(), h.refcountOrder(), h.headerLength(), h.compressionType(),
                h.unknownHeaderFields(), h.extensions(), h.backingFileName());
        write(file, 0, rebuilt.encode((int) clusterSize), resource);
        file.sync();
        return rebuilt;
    }

    private static void write(ImageFile file, long offset, ByteBuffer data, String resource) throws IOException {
        try {
            file.write(offset, data);
        } catch (IOException e) {
            throw BlockException.io(resource, offset, "refcount rebuild write", e);
        }
    }
}
