package dev.shear.nbd.protocol;

/**
 * The only error values a server may put on the wire (nbd-protocol.md §8.1). Clients treat anything
 * else as EINVAL, so nothing else is representable here.
 */
public enum NbdError {
    EPERM(1),
    EIO(5),
    ENOMEM(12),
    EINVAL(22),
    ENOSPC(28),
    EOVERFLOW(75),
    ENOTSUP(95),
    ESHUTDOWN(108);

    private final int wireValue;

    NbdError(int wireValue) {
        this.wireValue = wireValue;
    }

    /** The value sent in simple replies and error chunks. */
    public int wireValue() {
        return wireValue;
    }

    /** The error for a wire value, or null for 0 or a value the protocol does not define. */
    public static NbdError fromWire(int value) {
        for (NbdError e : values()) {
            if (e.wireValue == value) {
                return e;
            }
        }
        return null;
    }
}
