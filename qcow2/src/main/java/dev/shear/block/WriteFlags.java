package dev.shear.block;

/**
 * Flags of mutating calls, an int bitmask (the NBD command flags they come from have the same
 * meaning, not the same values: the server translates).
 */
public final class WriteFlags {
    /** Durable on return (NBD_CMD_FLAG_FUA). */
    public static final int FUA = 1;
    /** writeZeroes must keep the range allocated (NBD_CMD_FLAG_NO_HOLE); without it, unmapping is allowed. */
    public static final int NO_HOLE = 1 << 1;
    /** writeZeroes must fail with NOT_SUPPORTED rather than be slow (NBD_CMD_FLAG_FAST_ZERO). */
    public static final int FAST_ZERO = 1 << 2;

    public static final int NONE = 0;

    private WriteFlags() {
    }

    public static boolean has(int flags, int flag) {
        return (flags & flag) != 0;
    }
}
