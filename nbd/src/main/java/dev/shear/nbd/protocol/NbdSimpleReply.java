package dev.shear.nbd.protocol;

import io.netty.util.Recycler;
import io.netty.util.ReferenceCounted;
import java.util.List;

/**
 * A simple reply (nbd-protocol.md §5.1): 16-byte header, then the read data for a successful READ
 * when structured replies were not negotiated. Forbidden under extended headers. Pooled
 * ({@link NbdPooledMessage}).
 * <pre>
 *   0  4  magic 0x67446698
 *   4  4  error (0 = success)
 *   8  8  cookie
 *  16  *  data (successful READ only)
 * </pre>
 */
public final class NbdSimpleReply extends NbdPayloadReply implements NbdReply {
    private static final Recycler<NbdSimpleReply> RECYCLER = recycler(NbdSimpleReply::new);

    private NbdError error;

    private NbdSimpleReply(Recycler.Handle<NbdSimpleReply> handle) {
        super(handle);
    }

    /** A reply without data. @param error null for success */
    public static NbdSimpleReply newInstance(long cookie, NbdError error) {
        NbdSimpleReply r = RECYCLER.get();
        r.reuse();
        r.echo(cookie, 0);   // a simple reply has no offset field
        r.error = error;
        return r;
    }

    /**
     * A successful READ reply; takes ownership of the {@code data} parts (ByteBuf or FileRegion) unless it
     * throws.
     */
    public static NbdSimpleReply newReadInstance(long cookie, List<? extends ReferenceCounted> data) {
        long length = dataLength(data);
        NbdSimpleReply r = newInstance(cookie, null);
        r.takeParts(data, length);
        return r;
    }

    /** Null for success. */
    public NbdError error() {
        return error;
    }

    @Override
    protected void clear() {
        error = null;
        super.clear();
    }

    @Override
    public String toString() {
        return "NbdSimpleReply(cookie=0x" + Long.toHexString(cookie()) + ", error=" + error
                + ", data=" + dataLength() + ")";
    }
}
