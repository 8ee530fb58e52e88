package dev.shear.nbd.server;

/**
 * A metadata context an export offers for block status (nbd-protocol.md §7). Context ids are QEMU's:
 * base:allocation 0, qemu:allocation-depth 1, qemu:dirty-bitmap:NAME 2 + the bitmap's index.
 */
public sealed interface MetaContext {
    String BASE_ALLOCATION = "base:allocation";
    String ALLOCATION_DEPTH = "qemu:allocation-depth";
    String DIRTY_BITMAP_PREFIX = "qemu:dirty-bitmap:";

    /** The context name as on the wire. */
    String name();

    /** The id sent in NBD_REP_META_CONTEXT and block status chunks. */
    int id();

    /** base:allocation: bit 0 HOLE, bit 1 ZERO. */
    record BaseAllocation() implements MetaContext {
        @Override
        public String name() {
            return BASE_ALLOCATION;
        }

        @Override
        public int id() {
            return 0;
        }
    }

    /** qemu:allocation-depth: 0 unallocated, 1 the top image, 2 its backing file... */
    record AllocationDepth() implements MetaContext {
        @Override
        public String name() {
            return ALLOCATION_DEPTH;
        }

        @Override
        public int id() {
            return 1;
        }
    }

    /** qemu:dirty-bitmap:NAME: bit 0 DIRTY. */
    record DirtyBitmapContext(String bitmap, int index) implements MetaContext {
        @Override
        public String name() {
            return DIRTY_BITMAP_PREFIX + bitmap;
        }

        @Override
        public int id() {
            return 2 + index;
        }
    }
}
