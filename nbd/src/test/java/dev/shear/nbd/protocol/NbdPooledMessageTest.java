package dev.shear.nbd.protocol;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.util.IllegalReferenceCountException;
import io.netty.util.concurrent.FastThreadLocalThread;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/**
 * Recycling of pooled messages ({@link NbdPooledMessage}): an instance goes back to the pool on its last
 * release and only then. Runs on a FastThreadLocalThread, like every thread of the server, since Netty
 * pools nowhere else; each test first checks that pooling is on, else it would prove nothing.
 */
class NbdPooledMessageTest {
    private static final int MAX = 1 << 16;

    /** Runs {@code body} on a new FastThreadLocalThread (a fresh pool) and rethrows what it threw. */
    private static void onFastThreadLocalThread(Executable body) throws Throwable {
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread t = new FastThreadLocalThread(() -> {
            try {
                body.execute();
            } catch (Throwable e) {
                failure.set(e);
            }
        }, "pooled-message-test");
        t.start();
        t.join(30_000);
        assertFalse(t.isAlive(), "test thread still running after 30 s");
        if (failure.get() != null) {
            throw failure.get();
        }
    }

    private static ByteBuf read(long cookie) {
        return Unpooled.wrappedBuffer(NbdRequestDecoderTest.request(0, NbdConstants.NBD_CMD_READ, cookie, 512 * cookie,
                512, null));
    }

    /** Decodes and releases 16 requests together, so that the pool holds instances (Netty pools 1 in 8). */
    private static void warmRequests(EmbeddedChannel ch) {
        List<NbdRequest> all = new ArrayList<>();
        for (int i = 0; i < 16; i++) {
            ch.writeInbound(read(1000 + i));
            all.add(ch.readInbound());
        }
        for (NbdRequest r : all) {
            r.release();
        }
    }

    @Test
    void requestInFlightShouldNotBeHandedOutAgain() throws Throwable {
        onFastThreadLocalThread(() -> {
            EmbeddedChannel ch = new EmbeddedChannel(new NbdRequestDecoder(false, MAX));
            warmRequests(ch);
            byte[] payload = {1, 2, 3, 4, 5, 6, 7, 8};
            ch.writeInbound(read(1));
            ch.writeInbound(Unpooled.wrappedBuffer(NbdRequestDecoderTest.request(0, NbdConstants.NBD_CMD_WRITE, 2,
                    4096, payload.length, payload)));
            NbdRequest a = ch.readInbound();
            NbdRequest b = ch.readInbound();
            assertNotSame(a, b, "two requests in flight share an instance");

            // A completes first (out of order): its instance may now serve the next request, B's may not.
            a.release();
            ch.writeInbound(read(3));
            NbdRequest c = ch.readInbound();
            assertSame(a, c, "pooling is off: this test would prove nothing");
            assertEquals(3, c.cookie());
            assertEquals(3 * 512, c.offset());
            assertEquals(2, b.cookie(), "in-flight request overwritten");
            assertEquals(4096, b.offset());
            assertArrayEquals(payload, ByteBufUtil.getBytes(b.payload()), "in-flight payload overwritten");
            b.release();
            c.release();
            assertFalse(ch.finishAndReleaseAll());
        });
    }

    @Test
    void releasedWriteShouldReturnItsPayloadReference() throws Throwable {
        onFastThreadLocalThread(() -> {
            EmbeddedChannel ch = new EmbeddedChannel(new NbdRequestDecoder(false, MAX));
            warmRequests(ch);
            byte[] payload = {9, 8, 7};
            ByteBuf in = Unpooled.directBuffer(64).writeBytes(NbdRequestDecoderTest.request(0,
                    NbdConstants.NBD_CMD_WRITE, 5, 0, payload.length, payload));
            in.retain();   // ours, to watch the count: the decoder releases the cumulation once consumed
            ch.writeInbound(in);
            NbdRequest w = ch.readInbound();
            assertEquals(2, in.refCnt(), "the request holds one reference of the cumulation");
            w.release();
            assertEquals(1, in.refCnt(), "release returns the payload reference, exactly once");
            assertThrows(IllegalReferenceCountException.class, w::release, "double release");
            assertEquals(1, in.refCnt());
            in.release();
            assertFalse(ch.finishAndReleaseAll());
        });
    }

    @Test
    void replyShouldBeRecycledByTheEncoderOnlyAfterItWasWritten() throws Throwable {
        onFastThreadLocalThread(() -> {
            EmbeddedChannel ch = new EmbeddedChannel(new NbdReplyEncoder(false));
            List<NbdSimpleReply> warm = new ArrayList<>();
            for (int i = 0; i < 16; i++) {
                warm.add(NbdSimpleReply.newInstance(1000 + i, null));
            }
            for (NbdSimpleReply r : warm) {
                r.release();
            }
            NbdSimpleReply first = NbdSimpleReply.newInstance(1, null);
            NbdSimpleReply second = NbdSimpleReply.newInstance(2, NbdError.EIO);
            assertNotSame(first, second);
            ch.writeOutbound(first);   // encoded, then released by MessageToMessageEncoder
            ByteBuf header = ch.readOutbound();
            assertEquals(1, header.getLong(8), "cookie on the wire");
            header.release();
            NbdSimpleReply third = NbdSimpleReply.newInstance(3, null);
            assertSame(first, third, "pooling is off or the encoder did not release: nothing proven");
            assertEquals(2, second.cookie(), "unwritten reply overwritten");
            assertEquals(NbdError.EIO, second.error());
            ch.writeOutbound(second, third);
            ByteBuf a = ch.readOutbound();
            ByteBuf b = ch.readOutbound();
            assertEquals(2, a.getLong(8));
            assertEquals(NbdError.EIO.wireValue(), a.getInt(4));
            assertEquals(3, b.getLong(8));
            a.release();
            b.release();
            assertFalse(ch.finishAndReleaseAll());
        });
    }
}
