package dev.shear.block;

/**
 * One run of a device with the same allocation state: what block status answers (nbd-protocol.md
 * §base:allocation, §qemu:allocation-depth; qemu-img map's JSON).
 *
 * <p>Flags use the NBD base:allocation bits: {@link #HOLE} = no storage is allocated for the range in
 * any layer (reads as zeros unless a lower layer says otherwise, see depth); {@link #ZERO} = the range
 * reads as zeros. Data is {@code flags == 0}. {@link #COMPRESSED} is informational (qemu-img map).
 *
 * @param offset     guest offset of the first byte
 * @param length     length in bytes, &gt; 0
 * @param flags      {@link #HOLE} | {@link #ZERO} | {@link #COMPRESSED}
 * @param depth      the layer that decides the contents: 0 the device itself, 1 its backing file, 2 the
 *                   backing file's backing file...; {@link #UNALLOCATED} when no layer has it
 * @param hostOffset byte offset in the file named by {@code depth} where the range's data lies
 *                   contiguously, or -1 (zero, compressed, unallocated, or not one contiguous run)
 */
public record Extent(long offset, long length, int flags, int depth, long hostOffset) {
    public static final int HOLE = 1;
    public static final int ZERO = 1 << 1;
    public static final int COMPRESSED = 1 << 2;

    /** Depth of a range that no layer of the chain allocates (reads as zeros). */
    public static final int UNALLOCATED = -1;

    public Extent {
        if (length <= 0) {
            throw new IllegalArgumentException("extent length: " + length + " (expected: > 0)");
        }
        if (offset < 0) {
            throw new IllegalArgumentException("extent offset: " + offset + " (expected: >= 0)");
        }
    }

    public static Extent data(long offset, long length, int depth, long hostOffset) {
        return new Extent(offset, length, 0, depth, hostOffset);
    }

    public static Extent zero(long offset, long length, int depth) {
        return new Extent(offset, length, ZERO, depth, -1);
    }

    public static Extent hole(long offset, long length) {
        return new Extent(offset, length, HOLE | ZERO, UNALLOCATED, -1);
    }

    public long end() {
        return offset + length;
    }

    public boolean isZero() {
        return (flags & ZERO) != 0;
    }

    public boolean isHole() {
        return (flags & HOLE) != 0;
    }

    public boolean isData() {
        return (flags & ZERO) == 0;
    }

    /** True when {@code next} starts where this ends and describes the same state (mergeable). */
    public boolean continuesWith(Extent next) {
        if (next.offset != end() || next.flags != flags || next.depth != depth) {
            return false;
        }
        if (hostOffset < 0 || next.hostOffset < 0) {
            return hostOffset < 0 && next.hostOffset < 0;
        }
        return next.hostOffset == hostOffset + length;
    }

    /** This extent and {@code next} as one ({@link #continuesWith} must hold). */
    public Extent merge(Extent next) {
        return new Extent(offset, length + next.length, flags, depth, hostOffset);
    }

    /** The part of this extent within [from, to). */
    public Extent clip(long from, long to) {
        long start = Math.max(offset, from);
        long stop = Math.min(end(), to);
        long host = hostOffset < 0 ? -1 : hostOffset + (start - offset);
        return new Extent(start, stop - start, flags, depth, host);
    }
}
