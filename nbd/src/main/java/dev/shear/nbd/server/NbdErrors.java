package dev.shear.nbd.server;

import dev.shear.block.BlockErrorKind;
import dev.shear.nbd.protocol.NbdConstants;
import dev.shear.nbd.protocol.NbdError;

/**
 * The one mapping from device failures to wire errors (style.md §3, nbd-protocol.md §8.1).
 *
 * <pre>
 * kind                     wire error
 * IO, CORRUPT_IMAGE        EIO
 * NO_SPACE                 ENOSPC
 * READ_ONLY                EPERM
 * OUT_OF_RANGE             EINVAL; ENOSPC for WRITE and WRITE_ZEROES (the spec, nbdkit; QEMU 7.2 says EINVAL)
 * NOT_SUPPORTED            ENOTSUP only if the request had FAST_ZERO, else EINVAL
 * OVERFLOW                 EOVERFLOW only if the request had DF, else EINVAL
 * SHUTDOWN                 ESHUTDOWN
 * anything else            EINVAL (QEMU's catch-all; nbdkit nbd_errno)
 * </pre>
 * The flag conditions exist because the spec allows ENOTSUP and EOVERFLOW only in those cases.
 */
public final class NbdErrors {
    private NbdErrors() {
    }

    /**
     * @param kind         what the device said
     * @param command      the NBD_CMD_* of the failed request
     * @param requestFlags its NBD_CMD_FLAG_* bits
     */
    public static NbdError toWire(BlockErrorKind kind, int command, int requestFlags) {
        return switch (kind) {
            case IO, CORRUPT_IMAGE -> NbdError.EIO;
            case NO_SPACE -> NbdError.ENOSPC;
            case READ_ONLY -> NbdError.EPERM;
            case OUT_OF_RANGE -> command == NbdConstants.NBD_CMD_WRITE
                    || command == NbdConstants.NBD_CMD_WRITE_ZEROES ? NbdError.ENOSPC : NbdError.EINVAL;
            case NOT_SUPPORTED -> (requestFlags & NbdConstants.NBD_CMD_FLAG_FAST_ZERO) != 0
                    ? NbdError.ENOTSUP : NbdError.EINVAL;
            case OVERFLOW -> (requestFlags & NbdConstants.NBD_CMD_FLAG_DF) != 0
                    ? NbdError.EOVERFLOW : NbdError.EINVAL;
            case SHUTDOWN -> NbdError.ESHUTDOWN;
            case INVALID_ARGUMENT, INVALID_FORMAT, UNSUPPORTED_FEATURE -> NbdError.EINVAL;
        };
    }
}
