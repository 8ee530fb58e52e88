package dev.shear.qcow2;

/**
 * Where the bytes of a guest range come from: the closed set a lookup under the metadata lock hands
 * to the data I/O that runs outside it (style.md §5; qcow2-format.md §6.3, §6.6; cloud-hypervisor
 * metadata.rs, QEMU get_host_offset). Lengths are bytes of the guest range a mapping covers.
 */
public sealed interface ClusterMapping {

    /** Not allocated here: read the backing file at the same guest offset, or zeros without one. */
    record Unallocated(long length) implements ClusterMapping {
        public Unallocated {
            requireNonNegative(length, "length");
        }
    }

    /**
     * Reads as zeros without consulting the backing file.
     *
     * @param hostOffset the preallocated host cluster (ZERO_ALLOC), or -1 (ZERO_PLAIN)
     */
    record Zero(long length, long hostOffset) implements ClusterMapping {
        public Zero {
            requireNonNegative(length, "length");
            if (hostOffset < -1) {
                throw new IllegalArgumentException("hostOffset: " + hostOffset + " (expected: >= -1)");
            }
        }
    }

    /** Host data at {@code hostOffset} in the image file, {@code length} bytes. */
    record Data(long hostOffset, long length) implements ClusterMapping {
        public Data {
            requireNonNegative(hostOffset, "hostOffset");
            requireNonNegative(length, "length");
        }
    }

    /**
     * A compressed cluster: read {@code compressedSize} bytes from {@code hostOffset} and inflate one
     * whole cluster (the bytes may include a neighbour's data, §6.4); the caller knows the cluster
     * size and which part of it the guest range wants.
     */
    record Compressed(long hostOffset, int compressedSize) implements ClusterMapping {
        public Compressed {
            requireNonNegative(hostOffset, "hostOffset");
            requireNonNegative(compressedSize, "compressedSize");
        }
    }

    private static void requireNonNegative(long value, String name) {
        if (value < 0) {
            throw new IllegalArgumentException(name + ": " + value + " (expected: >= 0)");
        }
    }
}
