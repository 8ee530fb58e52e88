package dev.shear.qcow2;

import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * State shared by the phases of one {@link Qcow2Check} run: the file, its layout, the computed
 * reference counts and the report; and {@link #reference}, the one way a phase counts a reference
 * (QEMU {@code qcow2_inc_refcounts_imrt}, qcow2-format.md §12).
 */
final class CheckContext {
    final ImageFile file;
    final String resource;
    final CheckLayout layout;
    /** File length when the check started: bounds every reference and the computed array. */
    final long fileSize;
    final CheckReport report;
    final InMemoryRefcounts computed;
    final int clusterBits;
    final long clusterSize;

    CheckContext(ImageFile file, String resource, CheckLayout layout, long fileSize, CheckReport report,
            InMemoryRefcounts computed) {
        this.file = file;
        this.resource = resource;
        this.layout = layout;
        this.fileSize = fileSize;
        this.report = report;
        this.computed = computed;
        this.clusterBits = layout.clusterBits();
        this.clusterSize = layout.clusterSize();
    }

    /**
     * Counts one reference to every host cluster that {@code [offset, offset + size)} touches.
     *
     * <p>A range that ends one cluster or more past the end of the file is a corruption and counts
     * nothing: the last cluster of a file may be partial, so less than a cluster past EOF is fine
     * (QEMU's rule, message included). A counter already at the image's maximum refcount is an
     * overflow corruption. Offsets are unsigned; one at or above 2^63 cannot be inside any file and is
     * treated as past the end (QEMU would try to grow its array there and fail).
     */
    void reference(long offset, long size) {
        if (size <= 0) {
            return;
        }
        if (offset < 0 || offset > Long.MAX_VALUE - size || offset + size - fileSize >= clusterSize) {
            report.corruption("ERROR: counting reference for region exceeding the end of the file by one "
                    + "cluster or more: offset 0x%x size 0x%x", offset, size);
            return;
        }
        long first = offset >>> clusterBits;
        long last = (offset + size - 1) >>> clusterBits;
        for (long k = first; k <= last; k++) {
            if (!computed.increment(k)) {
                report.corruption("ERROR: overflow cluster offset=0x%x", k << clusterBits);
                report.say("Use qemu-img amend to increase the refcount entry width or qemu-img convert to "
                        + "create a clean copy if the image cannot be opened for writing");
            }
        }
    }

    /** Reads {@code dst.remaining()} bytes at {@code offset}; past EOF reads zeros (as QEMU's file layer). */
    ByteBuffer read(long offset, ByteBuffer dst) throws IOException {
        file.read(offset, dst);
        return dst.flip();
    }
}
