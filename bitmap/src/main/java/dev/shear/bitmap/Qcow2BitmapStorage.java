package dev.shear.bitmap;

import dev.shear.block.BlockException;
import dev.shear.qcow2.BitmapsExtension;
import dev.shear.qcow2.HeaderExtension;
import dev.shear.qcow2.Qcow2Allocator;
import dev.shear.qcow2.Qcow2Header;
import dev.shear.qcow2.Qcow2Image;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * {@link BitmapStorage} over the qcow2 write engine's {@link Qcow2Allocator}: clusters come from the
 * engine's allocator (refcount 1), frees are deferred to its next flush, and the commit point is one
 * header write through {@link Qcow2Allocator#updateHeader} that replaces the bitmaps extension and sets
 * (or, with no bitmaps left, clears) autoclear bit 0 in the same sector (dirty-bitmaps.md §4.3).
 *
 * <p>The other header extensions are kept in file order; a new bitmaps extension goes last, where
 * QEMU writes it.
 */
public final class Qcow2BitmapStorage implements BitmapStorage {
    /** qcow2 autoclear bit 0, "bitmaps" (qcow2.rst, Header). */
    public static final long AUTOCLEAR_BITMAPS = 1L;

    private final Qcow2Image image;
    private final Qcow2Allocator allocator;

    /**
     * @throws BlockException READ_ONLY for an image opened read-only
     */
    public Qcow2BitmapStorage(Qcow2Image image) throws BlockException {
        this.image = image;
        this.allocator = image.allocator();
    }

    /** The engine's allocator (for {@link Qcow2Allocator#maintainAutoclear} and the current header). */
    public Qcow2Allocator allocator() {
        return allocator;
    }

    @Override
    public String resource() {
        return image.name();
    }

    @Override
    public int clusterBits() {
        return image.clusterBits();
    }

    @Override
    public long imageSize() {
        return image.size();
    }

    @Override
    public long allocate(int clusters) throws IOException {
        return allocator.allocateClusters(clusters);
    }

    @Override
    public void write(long hostOffset, ByteBuffer data) throws IOException {
        allocator.writeCluster(hostOffset, data);
    }

    @Override
    public void flush() throws IOException {
        allocator.flush();
    }

    @Override
    public void commitDirectory(int nbBitmaps, long directoryOffset, long directorySize) throws IOException {
        Qcow2Header h = allocator.header();
        if (nbBitmaps > 0 && h.version() < 3) {
            throw BlockException.unsupported(image.name(), -1, "qcow2 version %d: cannot store dirty bitmaps "
                    + "(expected: version 3, compat=1.1)", h.version());
        }
        List<HeaderExtension> extensions = new ArrayList<>();
        HeaderExtension fresh = nbBitmaps == 0 ? null
                : new BitmapsExtension(nbBitmaps, directorySize, directoryOffset).toExtension();
        for (HeaderExtension e : h.extensions()) {
            if (e.type() != HeaderExtension.BITMAPS) {
                extensions.add(e);
            }
        }
        if (fresh != null) {
            extensions.add(fresh);
        }
        long autoclear = nbBitmaps == 0 ? h.autoclearFeatures() & ~AUTOCLEAR_BITMAPS
                : h.autoclearFeatures() | AUTOCLEAR_BITMAPS;
        allocator.updateHeader(extensions, autoclear);
    }

    @Override
    public void free(long hostOffset, int clusters) throws IOException {
        allocator.freeClusters(hostOffset, (long) clusters << image.clusterBits());
    }

    @Override
    public void read(long hostOffset, ByteBuffer dst) throws IOException {
        image.file().read(hostOffset, dst);
    }
}
