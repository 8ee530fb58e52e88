package dev.shear.bench;

import dev.shear.nbd.protocol.NbdCodecAccess;
import dev.shear.nbd.protocol.NbdConstants;
import dev.shear.nbd.protocol.NbdOffsetDataChunk;
import dev.shear.nbd.protocol.NbdReply;
import dev.shear.nbd.protocol.NbdReplyEncoder;
import dev.shear.nbd.protocol.NbdRequest;
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
 * The NBD request decoder and reply encoder on the hot path, called directly (no pipeline), one
 * message per operation, with {@code -prof gc} as the point: the target is 0 B/op everywhere.
 * <ul>
 *   <li>decode, compact (28-byte) and extended (32-byte) headers: a READ, a 4 KiB WRITE with its
 *       payload, a BLOCK_STATUS;</li>
 *   <li>encode, structured headers: a simple reply, an OFFSET_DATA chunk whose 64 KiB payload passes
 *       through, an OFFSET_HOLE chunk, a 16-extent BLOCK_STATUS chunk; and the 16-extent
 *       BLOCK_STATUS_EXT chunk under extended headers.</li>
 * </ul>
 * Each operation does what the server does around the codec and nothing else: requests and replies
 * come from their recyclers ({@code newInstance}); the decoded request is released as the I/O task
 * would, the reply as MessageToMessageEncoder does after encode, the encoder's output as the socket
 * write would ("release on write"). Input buffers are built once and rewound, never copied; the
 * decoder's payload reference and the OFFSET_DATA data reference go back to 1 after each operation
 * (checked by the sanity test). Results are returned (byte counts, lengths) so nothing is dead code.
 *
 * <p>JVM setup, in {@link Fork}: JMH's workers are FastThreadLocalThreads
 * ({@link dev.shear.bench.fixtures.FastThreadLocalExecutor}) because Netty 4.2 recycles only on such
 * threads and the server's event loops and I/O pool are such threads; and Netty's leak detector is
 * off, as in Netty's own microbenchmarks, because at its default level it samples 1 in 128 buffer
 * allocations with a ~1.5 KB record (about 12 B per allocated header buffer) whatever the codec does.
 *
 * <pre>java -jar bench/target/benchmarks.jar NbdFramingBenchmark -prof gc</pre>
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"-Djmh.executor=CUSTOM",
        "-Djmh.executor.class=dev.shear.bench.fixtures.FastThreadLocalExecutor",
        "-Dio.netty.leakDetection.level=disabled"})
@State(Scope.Thread)
public class NbdFramingBenchmark {
    static final int READ_LENGTH = 65536;
    static final int WRITE_LENGTH = 4096;
    static final long STATUS_LENGTH = 1L << 30;
    static final int EXTENTS = 16;

    /**
     * The allocator channels use (Netty 4.2: adaptive). Not PooledByteBufAllocator.DEFAULT: in 4.2 it
     * keeps thread caches only for FastThreadLocalThreads, which the server has but a plain JMH thread
     * has not; adaptive behaves the same on both.
     */
    private final ByteBufAllocator alloc = ByteBufAllocator.DEFAULT;
    private ChannelHandlerContext ctx;
    private NbdRequestDecoder compactDecoder;
    private NbdRequestDecoder extendedDecoder;
    private NbdReplyEncoder structuredEncoder;
    private NbdReplyEncoder extendedEncoder;
    private ByteBuf readRequest;
    private ByteBuf writeRequest;
    private ByteBuf statusRequest;
    private ByteBuf extendedReadRequest;
    private ByteBuf extendedWriteRequest;
    private ByteBuf extendedStatusRequest;
    /** The read data an OFFSET_DATA chunk carries; its reference count is 1 between operations. */
    private ByteBuf data;
    private long[] lengths;
    private long[] flags;
    private final List<Object> out = new ArrayList<>(4);
    private long cookie;

    @Setup(Level.Trial)
    public void setUp() {
        ctx = context(alloc);
        compactDecoder = new NbdRequestDecoder(false, 32 << 20);
        extendedDecoder = new NbdRequestDecoder(true, 32 << 20);
        structuredEncoder = new NbdReplyEncoder(false);
        extendedEncoder = new NbdReplyEncoder(true);
        readRequest = request(false, NbdConstants.NBD_CMD_READ, READ_LENGTH, 0);
        writeRequest = request(false, NbdConstants.NBD_CMD_WRITE, WRITE_LENGTH, WRITE_LENGTH);
        statusRequest = request(false, NbdConstants.NBD_CMD_BLOCK_STATUS, STATUS_LENGTH, 0);
        extendedReadRequest = request(true, NbdConstants.NBD_CMD_READ, READ_LENGTH, 0);
        extendedWriteRequest = request(true, NbdConstants.NBD_CMD_WRITE, WRITE_LENGTH, WRITE_LENGTH);
        extendedStatusRequest = request(true, NbdConstants.NBD_CMD_BLOCK_STATUS, STATUS_LENGTH, 0);
        data = alloc.directBuffer(READ_LENGTH).writeZero(READ_LENGTH);
        lengths = new long[EXTENTS];
        flags = new long[EXTENTS];
        for (int i = 0; i < EXTENTS; i++) {
            lengths[i] = 65536;
            flags[i] = i & 3;
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        for (ByteBuf b : new ByteBuf[] {readRequest, writeRequest, statusRequest, extendedReadRequest,
                extendedWriteRequest, extendedStatusRequest, data}) {
            b.release();
        }
    }

    /** A request header (and zeroed payload) in a direct buffer, as it arrives from the socket. */
    private ByteBuf request(boolean extended, int type, long length, int payload) {
        int header = extended ? NbdConstants.EXTENDED_REQUEST_HEADER_LENGTH : NbdConstants.REQUEST_HEADER_LENGTH;
        ByteBuf b = alloc.directBuffer(header + payload);
        b.writeInt(extended ? NbdConstants.NBD_EXTENDED_REQUEST_MAGIC : NbdConstants.NBD_REQUEST_MAGIC);
        b.writeShort(extended && payload > 0 ? NbdConstants.NBD_CMD_FLAG_PAYLOAD_LEN : 0);
        b.writeShort(type).writeLong(42).writeLong(1 << 20);
        if (extended) {
            b.writeLong(length);
        } else {
            b.writeInt((int) length);
        }
        return b.writeZero(payload);
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

    /** Input buffer references (for the sanity test): 1 between operations. */
    int[] inputRefCounts() {
        return new int[] {readRequest.refCnt(), writeRequest.refCnt(), statusRequest.refCnt(),
            extendedReadRequest.refCnt(), extendedWriteRequest.refCnt(), extendedStatusRequest.refCnt(),
            data.refCnt()};
    }

    /**
     * Decodes one request from the rewound {@code in} and releases it as the I/O task would.
     *
     * @return effect length + payload bytes of the request
     */
    private long decode(NbdRequestDecoder decoder, ByteBuf in) {
        in.readerIndex(0);
        NbdCodecAccess.decode(decoder, ctx, in, out);
        NbdRequest r = (NbdRequest) out.get(0);
        long result = r.length() + r.payloadLength();
        r.release();
        out.clear();
        return result;
    }

    /**
     * Encodes {@code reply}, releases it as MessageToMessageEncoder does, then releases the output as the
     * socket write would.
     *
     * @return the bytes that would go on the wire
     */
    private long encode(NbdReplyEncoder encoder, NbdReply reply) {
        NbdCodecAccess.encode(encoder, ctx, reply, out);
        ((ReferenceCounted) reply).release();
        long bytes = 0;
        int n = out.size();
        for (int i = 0; i < n; i++) {
            Object o = out.get(i);
            bytes += ((ByteBuf) o).readableBytes();
            ReferenceCountUtil.release(o);
        }
        out.clear();
        return bytes;
    }

    @Benchmark
    public long decodeReadRequest() {
        return decode(compactDecoder, readRequest);
    }

    @Benchmark
    public long decodeWriteRequest4k() {
        return decode(compactDecoder, writeRequest);
    }

    @Benchmark
    public long decodeBlockStatusRequest() {
        return decode(compactDecoder, statusRequest);
    }

    @Benchmark
    public long decodeReadRequestExtended() {
        return decode(extendedDecoder, extendedReadRequest);
    }

    @Benchmark
    public long decodeWriteRequest4kExtended() {
        return decode(extendedDecoder, extendedWriteRequest);
    }

    @Benchmark
    public long decodeBlockStatusRequestExtended() {
        return decode(extendedDecoder, extendedStatusRequest);
    }

    @Benchmark
    public long encodeSimpleReply() {
        return encode(structuredEncoder, NbdSimpleReply.newInstance(++cookie, null));
    }

    @Benchmark
    public long encodeReadChunk64k() {
        return encode(structuredEncoder, NbdOffsetDataChunk.newInstance(++cookie, 0, 0, data.retain(), true));
    }

    @Benchmark
    public long encodeHoleChunk() {
        return encode(structuredEncoder, NbdReply.OffsetHoleChunk.newInstance(++cookie, 0, 0, READ_LENGTH, true));
    }

    @Benchmark
    public long encodeBlockStatus16() {
        return encode(structuredEncoder,
                NbdReply.BlockStatusChunk.newInstance(++cookie, 0, 1, lengths, flags, EXTENTS, true));
    }

    @Benchmark
    public long encodeBlockStatus16Extended() {
        return encode(extendedEncoder,
                NbdReply.BlockStatusChunk.newInstance(++cookie, 0, 1, lengths, flags, EXTENTS, true));
    }
}
