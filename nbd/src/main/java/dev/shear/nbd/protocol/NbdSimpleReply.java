package dev.shear.nbd.protocol;

import io.netty.util.ReferenceCounted;
import java.util.List;

/**
 * A simple reply (nbd-protocol.md §5.1): 16-byte header, then the read data for a successful READ
 * when structured replies were not negotiated. Forbidden under extended headers.
 * <pre>
 *   0  4  magic 0x67446698
 *   4  4  error (0 = success)
 *   8  8  cookie
 *  16  *  data (successful READ only)
 * </pre>
 */
public final class NbdSimpleReply extends NbdPayloadReply implements NbdReply {
    private final long cookie;
    private final NbdError error;

    /** @param error null for success */
    public NbdSimpleReply(long cookie, NbdError error, List<ReferenceCounted> data) {
        super(data);
        if (error != null && !data.isEmpty()) {
            throw new IllegalArgumentException("simple error reply with data");
        }
        this.cookie = cookie;
        this.error = error;
    }

    public static NbdSimpleReply of(long cookie, NbdError error) {
        return new NbdSimpleReply(cookie, error, List.of());
    }

    @Override
    public long cookie() {
        return cookie;
    }

    @Override
    public long requestOffset() {
        return 0;
    }

    /** Null for success. */
    public NbdError error() {
        return error;
    }

    @Override
    public String toString() {
        return "NbdSimpleReply(cookie=0x" + Long.toHexString(cookie) + ", error=" + error
                + ", data=" + dataLength() + ")";
    }
}
