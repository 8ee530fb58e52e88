package dev.shear.qcow2;

/**
 * How to open a qcow2 image ({@link Qcow2Image#open}).
 *
 * @param readOnly      open read-only; false opens the write engine
 * @param snapshot      an internal snapshot to open, by ID or name (QEMU's lookup order: ID first),
 *                      as a read-only view with the snapshot's L1 table and disk size; null for the
 *                      active image
 * @param maxChainDepth most backing files below this image (a deeper chain is refused)
 * @param cacheBytes    capacity of the L2 table cache of this image (and of each qcow2 backing file)
 * @param lazyRefcounts for read-write opens: postpone refcount ordering behind the dirty bit
 *                      (qcow2-format.md §10 "Lazy refcounts"); null = as the image's compatible bit 0
 *                      says (QEMU's {@code lazy-refcounts} open option default)
 */
public record Qcow2OpenOptions(boolean readOnly, String snapshot, int maxChainDepth, long cacheBytes,
        Boolean lazyRefcounts) {
    /** Chains deeper than this are refused by default (QEMU has no fixed limit; 64 is generous). */
    public static final int DEFAULT_MAX_CHAIN_DEPTH = 64;

    public Qcow2OpenOptions {
        if (maxChainDepth < 0) {
            throw new IllegalArgumentException("maxChainDepth: " + maxChainDepth + " (expected: >= 0)");
        }
        if (cacheBytes <= 0) {
            throw new IllegalArgumentException("cacheBytes: " + cacheBytes + " (expected: > 0)");
        }
    }

    /** Read-only, active image, chain depth 64, 32 MiB L2 cache (QEMU's default maximum on Linux). */
    public static Qcow2OpenOptions defaults() {
        return new Qcow2OpenOptions(true, null, DEFAULT_MAX_CHAIN_DEPTH, MetadataCache.DEFAULT_CAPACITY_BYTES, null);
    }

    public Qcow2OpenOptions withSnapshot(String idOrName) {
        return new Qcow2OpenOptions(readOnly, idOrName, maxChainDepth, cacheBytes, lazyRefcounts);
    }

    public Qcow2OpenOptions withReadOnly(boolean ro) {
        return new Qcow2OpenOptions(ro, snapshot, maxChainDepth, cacheBytes, lazyRefcounts);
    }

    public Qcow2OpenOptions withCacheBytes(long bytes) {
        return new Qcow2OpenOptions(readOnly, snapshot, maxChainDepth, bytes, lazyRefcounts);
    }

    public Qcow2OpenOptions withMaxChainDepth(int depth) {
        return new Qcow2OpenOptions(readOnly, snapshot, depth, cacheBytes, lazyRefcounts);
    }

    /** Read-write opens: lazy refcounts on or off (null: as the image says). */
    public Qcow2OpenOptions withLazyRefcounts(Boolean lazy) {
        return new Qcow2OpenOptions(readOnly, snapshot, maxChainDepth, cacheBytes, lazy);
    }
}
