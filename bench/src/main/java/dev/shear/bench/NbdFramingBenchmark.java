package dev.shear.bench;

import dev.shear.nbd.protocol.NbdCodecAccess;
import dev.shear.nbd.protocol.NbdConstants;
import dev.shear.nbd.protocol.NbdOffsetDataChunk;
import dev.shear.nbd.protocol.NbdReply;
import dev.shear.nbd.protocol.NbdReplyEncoder;
import dev.shear.nbd.protocol.NbdRequestDecoder;
import dev.shear.nbd.protocol.NbdSimpleReply;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.channel.ChannelHandlerContext;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.ReferenceCounted;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The NBD request decoder and reply encoder on the hot path, called directly (no pipeline): one
 * 28-byte READ request header; one 4 KiB WRITE request; a simple reply; the header of a 64 KiB
 * OFFSET_DATA chunk whose payload passes through; a 16-extent BLOCK_STATUS chunk. The context hands
 * out the channels' default allocator; everything the codecs produce is released after each operation, as the
 * socket write would ("release on write"). Run with {@code -prof gc} for B/op.
 *
 * <pre>java -jar bench/target/benchmarks.jar NbdFramingBenchmark -prof gc</pre>
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
@State(Scope.Thread)
public class NbdFramingBenchmark {
    /**
     * The allocator channels use (Netty 4.2: adaptive). Not PooledByteBufAllocator.DEFAULT: in 4.2 it
     * keeps thread caches only for FastThreadLocalThreads (event loops), so on a JMH thread every
     * buffer cost 116 B and every retained slice 72 B of garbage that the server never makes.
     */
    private final ByteBufAllocator alloc = ByteBufAllocator.DEFAULT;
    private ChannelHandlerContext ctx;
    private NbdRequestDecoder decoder;
    private NbdReplyEncoder encoder;
    private ByteBuf readRequest;
    private ByteBuf writeRequest;
    private ByteBuf data;
    private long[] lengths;
    private long[] flags;
    private final List<Object> out = new ArrayList<>(4);
    private long cookie;

    @Setup(Level.Trial)
    public void setUp() {
        ctx = context(alloc);
        decoder = new NbdRequestDecoder(false, 32 << 20);
        encoder = new NbdReplyEncoder(false);
        readRequest = alloc.directBuffer(28);
        header(readRequest, NbdConstants.NBD_CMD_READ, 65536);
        writeRequest = alloc.directBuffer(28 + 4096);
        header(writeRequest, NbdConstants.NBD_CMD_WRITE, 4096);
        writeRequest.writeZero(4096);
        data = alloc.directBuffer(65536).writeZero(65536);
        lengths = new long[16];
        flags = new long[16];
        for (int i = 0; i < 16; i++) {
            lengths[i] = 65536;
            flags[i] = i & 3;
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        readRequest.release();
        writeRequest.release();
        data.release();
    }

    private static void header(ByteBuf b, int type, int length) {
        b.writeInt(NbdConstants.NBD_REQUEST_MAGIC).writeShort(0).writeShort(type).writeLong(42)
                .writeLong(1 << 20).writeInt(length);
    }

    /** A context that answers alloc() and nothing else: all the codecs ask of it. */
    static ChannelHandlerContext context(ByteBufAllocator alloc) {
        return (ChannelHandlerContext) Proxy.newProxyInstance(NbdFramingBenchmark.class.getClassLoader(),
                new Class<?>[] {ChannelHandlerContext.class}, (proxy, method, args) -> {
                    if (method.getName().equals("alloc")) {
                        return alloc;
                    }
                    throw new UnsupportedOperationException("benchmark context: " + method.getName());
                });
    }

    /** Releases what the codec produced, as the socket write (or the I/O task) would. */
    private int drain() {
        int n = out.size();
        for (int i = 0; i < n; i++) {
            ReferenceCountUtil.release(out.get(i));
        }
        out.clear();
        return n;
    }

    @Benchmark
    public int decodeReadRequest() {
        readRequest.readerIndex(0);
        NbdCodecAccess.decode(decoder, ctx, readRequest, out);
        return drain();
    }

    @Benchmark
    public int decodeWriteRequest4k() {
        writeRequest.readerIndex(0);
        NbdCodecAccess.decode(decoder, ctx, writeRequest, out);
        return drain();
    }

    @Benchmark
    public int encodeSimpleReply() {
        NbdCodecAccess.encode(encoder, ctx, NbdSimpleReply.of(++cookie, null), out);
        return drain();
    }

    @Benchmark
    public int encodeReadChunk64k() {
        NbdOffsetDataChunk chunk = new NbdOffsetDataChunk(++cookie, 0, 0, List.<ReferenceCounted>of(data.retain()),
                true);
        NbdCodecAccess.encode(encoder, ctx, chunk, out);
        chunk.release();   // MessageToMessageEncoder releases the message after encode()
        return drain();
    }

    @Benchmark
    public int encodeBlockStatus16() {
        NbdReply.BlockStatusChunk c = new NbdReply.BlockStatusChunk(++cookie, 0, 1, lengths, flags, 16, true);
        NbdCodecAccess.encode(encoder, ctx, c, out);
        return drain();
    }
}
