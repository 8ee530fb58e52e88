package dev.shear.nbd.server;

import dev.shear.nbd.protocol.NbdConstants;
import dev.shear.nbd.protocol.NbdError;
import dev.shear.nbd.protocol.NbdRequest;

/**
 * Judges a transmission request before anything touches the device, as nbdkit's
 * {@code validate_request} does (nbd-protocol.md §4.3, §4.4, §6, §8.2). Pure: same input, same answer.
 *
 * <p>Rules, in order (the first that fails decides):
 * <ol>
 *   <li>the decoder already rejected it (oversized WRITE, payload on a command that takes none);</li>
 *   <li>unknown command type (RESIZE included: not advertised) &rarr; EINVAL;</li>
 *   <li>a flag unknown or not valid for the command &rarr; EINVAL: FUA is accepted on every command
 *       (clients send it everywhere); DF on READ only if SEND_DF was advertised; NO_HOLE on
 *       WRITE_ZEROES; FAST_ZERO on WRITE_ZEROES only if SEND_FAST_ZERO; REQ_ONE on BLOCK_STATUS;
 *       PAYLOAD_LEN on WRITE under extended headers;</li>
 *   <li>WRITE, TRIM, WRITE_ZEROES on a read-only export &rarr; EPERM;</li>
 *   <li>TRIM or WRITE_ZEROES not advertised &rarr; EINVAL;</li>
 *   <li>range past the end (unsigned, overflow-safe) &rarr; ENOSPC for WRITE and WRITE_ZEROES, EINVAL
 *       otherwise; BLOCK_STATUS only needs its offset inside the export, since its length is a hint
 *       and the answer is clipped to the end (a disk smaller than the request is described whole);</li>
 *   <li>READ or CACHE longer than the maximum payload &rarr; EINVAL (QEMU);</li>
 *   <li>BLOCK_STATUS without a selected context, or of length 0 &rarr; EINVAL.</li>
 * </ol>
 * Zero-length READ, WRITE, TRIM, WRITE_ZEROES and CACHE are valid no-ops (§12 pitfall 14). FLUSH
 * ignores its offset and length, as QEMU does.
 */
public final class RequestValidator {
    private RequestValidator() {
    }

    /**
     * @param size              export size in bytes
     * @param transmissionFlags the flags this connection was given
     * @param haveContexts      SET_META_CONTEXT selected at least one context for this export
     * @param maxPayload        the advertised maximum payload
     * @return null if the request may run, else the error to reply with
     */
    public static NbdError validate(NbdRequest r, long size, int transmissionFlags, boolean haveContexts,
            int maxPayload) {
        if (r.rejected() != null) {
            return r.rejected();
        }
        int cmd = r.type();
        int allowed = NbdConstants.NBD_CMD_FLAG_FUA;
        switch (cmd) {
            case NbdConstants.NBD_CMD_READ -> {
                if ((transmissionFlags & NbdConstants.NBD_FLAG_SEND_DF) != 0) {
                    allowed |= NbdConstants.NBD_CMD_FLAG_DF;
                }
            }
            case NbdConstants.NBD_CMD_WRITE -> {
                if (r.extended()) {
                    allowed |= NbdConstants.NBD_CMD_FLAG_PAYLOAD_LEN;
                }
            }
            case NbdConstants.NBD_CMD_WRITE_ZEROES -> {
                allowed |= NbdConstants.NBD_CMD_FLAG_NO_HOLE;
                if ((transmissionFlags & NbdConstants.NBD_FLAG_SEND_FAST_ZERO) != 0) {
                    allowed |= NbdConstants.NBD_CMD_FLAG_FAST_ZERO;
                }
            }
            case NbdConstants.NBD_CMD_BLOCK_STATUS -> allowed |= NbdConstants.NBD_CMD_FLAG_REQ_ONE;
            case NbdConstants.NBD_CMD_FLUSH, NbdConstants.NBD_CMD_TRIM, NbdConstants.NBD_CMD_CACHE -> {
            }
            default -> {
                return NbdError.EINVAL;
            }
        }
        if ((r.flags() & ~allowed) != 0) {
            return NbdError.EINVAL;
        }
        boolean mutating = cmd == NbdConstants.NBD_CMD_WRITE || cmd == NbdConstants.NBD_CMD_TRIM
                || cmd == NbdConstants.NBD_CMD_WRITE_ZEROES;
        if (mutating && (transmissionFlags & NbdConstants.NBD_FLAG_READ_ONLY) != 0) {
            return NbdError.EPERM;
        }
        if (cmd == NbdConstants.NBD_CMD_TRIM && (transmissionFlags & NbdConstants.NBD_FLAG_SEND_TRIM) == 0
                || cmd == NbdConstants.NBD_CMD_WRITE_ZEROES
                        && (transmissionFlags & NbdConstants.NBD_FLAG_SEND_WRITE_ZEROES) == 0) {
            return NbdError.EINVAL;
        }
        if (cmd == NbdConstants.NBD_CMD_FLUSH) {
            return null;
        }
        if (cmd == NbdConstants.NBD_CMD_BLOCK_STATUS) {
            if (!haveContexts || r.length() == 0) {
                return NbdError.EINVAL;
            }
            return Long.compareUnsigned(r.offset(), size) >= 0 ? NbdError.EINVAL : null;
        }
        if (!inBounds(r.offset(), r.length(), size)) {
            return cmd == NbdConstants.NBD_CMD_WRITE || cmd == NbdConstants.NBD_CMD_WRITE_ZEROES
                    ? NbdError.ENOSPC : NbdError.EINVAL;
        }
        if ((cmd == NbdConstants.NBD_CMD_READ || cmd == NbdConstants.NBD_CMD_CACHE)
                && Long.compareUnsigned(r.length(), maxPayload) > 0) {
            return NbdError.EINVAL;
        }
        return null;
    }

    /** offset + length &lt;= size with both read as unsigned 64-bit values, without overflow. */
    static boolean inBounds(long offset, long length, long size) {
        return Long.compareUnsigned(offset, size) <= 0 && Long.compareUnsigned(length, size - offset) <= 0;
    }
}
