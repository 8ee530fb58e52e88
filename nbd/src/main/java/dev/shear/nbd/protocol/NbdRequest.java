package dev.shear.nbd.protocol;

/**
 * One transmission-phase request header (nbd-protocol.md §4.1, §4.2), decoded but not validated.
 *
 * @param flags     command flags (16 bits)
 * @param type      command type (16 bits; unknown values are kept)
 * @param cookie    opaque, echoed byte for byte in every reply
 * @param offset    guest offset as sent: an unsigned 64-bit value (negative here means &ge; 2^63)
 * @param length    effect length, unsigned: 32 bits in compact headers, 64 bits in extended ones
 *                  (for a WRITE the payload length); negative here means &ge; 2^63
 * @param extended  the request came with the 32-byte extended header
 * @param rejected  null, or the error the decoder already decided (an oversized WRITE whose payload
 *                  is being skipped, a payload on a command that takes none)
 */
public record NbdRequest(int flags, int type, long cookie, long offset, long length, boolean extended,
        NbdError rejected) {

    public boolean hasFlag(int flag) {
        return (flags & flag) != 0;
    }

    /** This request, failed by the decoder with {@code error}. */
    public NbdRequest reject(NbdError error) {
        return new NbdRequest(flags, type, cookie, offset, length, extended, error);
    }

    /** {@code cmd=READ cookie=0x... offset=0x... length=...} for logs. */
    @Override
    public String toString() {
        return "cmd=" + NbdConstants.commandName(type) + " cookie=0x" + Long.toHexString(cookie)
                + " offset=0x" + Long.toHexString(offset) + " length=" + Long.toUnsignedString(length)
                + " flags=0x" + Integer.toHexString(flags);
    }
}
