package dev.shear.block;

/**
 * What a device can do, told truthfully so that the NBD server can advertise exactly these
 * transmission flags and block sizes (nbd-protocol.md §Transmission flags, §Block size constraints).
 *
 * @param canWrite         writes are accepted (false: every mutating call fails with READ_ONLY)
 * @param canFlush         flush makes earlier writes durable
 * @param canFua           a write flagged FUA is durable when it returns
 * @param canTrim          discard releases space
 * @param canZero          writeZeroes is implemented efficiently (not by writing a buffer of zeros)
 * @param canFastZero      writeZeroes with FAST_ZERO answers NOT_SUPPORTED instead of being slow
 * @param canMultiConn     several connections may share this device (one device, one cache)
 * @param minimumBlockSize smallest I/O the device handles without read-modify-write (power of two)
 * @param preferredBlockSize the size below which I/O costs a read-modify-write (cluster size)
 * @param maximumBlockSize the largest single request
 */
public record BlockCapabilities(
        boolean canWrite,
        boolean canFlush,
        boolean canFua,
        boolean canTrim,
        boolean canZero,
        boolean canFastZero,
        boolean canMultiConn,
        int minimumBlockSize,
        int preferredBlockSize,
        int maximumBlockSize) {

    /** NBD's usual limit on one request's payload (nbd-protocol.md): 32 MiB. */
    public static final int DEFAULT_MAXIMUM_BLOCK_SIZE = 32 << 20;

    public BlockCapabilities {
        if (Integer.bitCount(minimumBlockSize) != 1 || Integer.bitCount(preferredBlockSize) != 1) {
            throw new IllegalArgumentException("block sizes must be powers of two: minimum "
                    + minimumBlockSize + ", preferred " + preferredBlockSize);
        }
        if (minimumBlockSize > preferredBlockSize || preferredBlockSize > maximumBlockSize) {
            throw new IllegalArgumentException("block sizes out of order: " + minimumBlockSize + " <= "
                    + preferredBlockSize + " <= " + maximumBlockSize);
        }
    }

    /** A read-only device with the given preferred block size. */
    public static BlockCapabilities readOnly(int preferredBlockSize) {
        return new BlockCapabilities(false, false, false, false, false, false, true,
                1, preferredBlockSize, DEFAULT_MAXIMUM_BLOCK_SIZE);
    }

    /** The same capabilities with every write-side flag cleared (a read-only view of a device). */
    public BlockCapabilities withoutWrites() {
        return new BlockCapabilities(false, false, false, false, false, false, canMultiConn,
                minimumBlockSize, preferredBlockSize, maximumBlockSize);
    }
}
