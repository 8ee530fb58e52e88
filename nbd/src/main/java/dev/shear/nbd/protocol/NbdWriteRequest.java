package dev.shear.nbd.protocol;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.DefaultByteBufHolder;

/**
 * A WRITE request with its whole payload (style.md §4 rule 2): the message owns the payload slice
 * from the decoder on; whoever finishes with it (the I/O task, or the handler that drops it) releases
 * it exactly once.
 */
public final class NbdWriteRequest extends DefaultByteBufHolder {
    private final NbdRequest request;

    public NbdWriteRequest(NbdRequest request, ByteBuf payload) {
        super(payload);
        this.request = request;
    }

    public NbdRequest request() {
        return request;
    }

    @Override
    public NbdWriteRequest replace(ByteBuf content) {
        return new NbdWriteRequest(request, content);
    }

    @Override
    public NbdWriteRequest retain() {
        super.retain();
        return this;
    }

    @Override
    public NbdWriteRequest touch(Object hint) {
        super.touch(hint);
        return this;
    }

    @Override
    public String toString() {
        return request.toString();
    }
}
