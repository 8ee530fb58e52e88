package dev.shear.qcow2;

import dev.shear.block.BlockException;
import java.io.IOException;

/**
 * "Signal corruption once, then refuse writes" (qcow2-format.md §11; QEMU
 * {@code qcow2_signal_corruption}): the first inconsistency found while writing (a data write that
 * would overwrite metadata, a malformed L2 entry met by a write, a refcount underflow) is logged once,
 * the corrupt bit is set in the header on disk (best effort: the write that found it is failing
 * anyway), and from then on every mutating call fails with CORRUPT_IMAGE naming the first finding.
 * Reads of healthy ranges keep working; a bad range fails on its own.
 */
final class Corruption {
    private static final System.Logger LOG = System.getLogger(Corruption.class.getName());

    /** Writes the header with the corrupt bit (and syncs). */
    @FunctionalInterface
    interface Marker {
        void markCorrupt() throws IOException;
    }

    private final String resource;
    private volatile String reason;   // null while healthy; set once (under this)
    private Marker marker;            // set once before use

    Corruption(String resource, String initialReason) {
        this.resource = resource;
        this.reason = initialReason;
    }

    void setMarker(Marker marker) {
        this.marker = marker;
    }

    /** The first finding, or null. */
    String reason() {
        return reason;
    }

    boolean isSignalled() {
        return reason != null;
    }

    /**
     * Records the finding (the first one only), marks the image corrupt on disk, and returns the
     * exception the caller throws. Must not be called with the metadata read lock held (the marker takes
     * the write lock to rewrite the header).
     */
    BlockException signal(long offset, String detail) {
        boolean first;
        synchronized (this) {
            first = reason == null;
            if (first) {
                reason = detail;
            }
        }
        if (first) {
            LOG.log(System.Logger.Level.ERROR, "qcow2 image {0} is corrupt and will be marked as such: {1} "
                    + "(further corruption events will be suppressed)", resource, detail);
            if (marker != null) {
                try {
                    marker.markCorrupt();
                } catch (IOException | RuntimeException e) {
                    LOG.log(System.Logger.Level.ERROR, "could not set the corrupt bit of {0}: {1}", resource,
                            e.getMessage());
                }
            }
        }
        return BlockException.corrupt(resource, offset, "%s; the image is marked corrupt and refuses writes",
                detail);
    }

    /** Fails with CORRUPT_IMAGE once a corruption was signalled (or the image was opened corrupt). */
    void checkWritable() throws BlockException {
        String r = reason;
        if (r != null) {
            throw BlockException.corrupt(resource, -1, "write refused: image is corrupt (%s); repair it with "
                    + "qemu-img check -r all", r);
        }
    }
}
