package dev.shear.nbd.server;

import dev.shear.nbd.protocol.NbdConstants;
import dev.shear.nbd.protocol.NbdReplyEncoder;
import dev.shear.nbd.protocol.NbdRequestDecoder;
import io.netty.buffer.ByteBuf;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.util.ReferenceCountUtil;
import java.util.List;
import java.util.function.BooleanSupplier;

/**
 * Runs the transmission path (decode, validate, dispatch, device metadata, encode) over synthetic
 * READ and BLOCK_STATUS requests in the background once the server listens, so that the first client meets classes
 * loaded and methods compiled instead of a cold interpreter (a cold 16 TiB {@code nbdinfo --map} took
 * seconds). The requests go through an {@link EmbeddedChannel} with the real handlers, against the
 * first export's own device (the profile the JIT sees is the real one), read-only: READ of a device
 * with file data only maps it (FileRegions are released unsent), BLOCK_STATUS reads metadata.
 * Both structured and extended framing are exercised. Devices without zero-copy would read data, so
 * READ uses at most 4 KiB at offset 0.
 *
 * <p>{@code -Dshear.nbd.warmup=N} sets the number of requests (default {@value #DEFAULT_REQUESTS}:
 * off. Measured on 2 busy cores, 12k requests made the first 16 TiB map right after start slower,
 * 2.3-2.6 s vs 1.1-1.3 s, since warm-up and the client share the CPU; later maps were faster).
 * Failures are logged and ignored: warm-up is an optimisation only.
 */
final class RequestPathWarmup {
    static final int DEFAULT_REQUESTS = 0;

    private RequestPathWarmup() {
    }

    static int requests() {
        return Integer.getInteger("shear.nbd.warmup", DEFAULT_REQUESTS);
    }

    /** Warms the path with {@code n} requests on {@code export}; returns the milliseconds spent. */
    static long run(Export export, int n, BooleanSupplier stop) {
        long t0 = System.nanoTime();
        try {
            long size = export.device().size();
            if (size == 0 || n <= 0) {
                return 0;
            }
            boolean extendedPass = false;
            for (int pass = 0; pass < 2; pass++) {
                pass(export, n / 2, extendedPass, size, stop);
                extendedPass = true;
            }
        } catch (Exception | LinkageError e) {
            ServerLog.warn("warmup-failed", "exception", e.getClass().getName(), "message", e.getMessage());
        }
        return (System.nanoTime() - t0) / 1_000_000;
    }

    private static void pass(Export export, int n, boolean extended, long size, BooleanSupplier stop) {
        List<MetaContext> contexts = List.of(new MetaContext.BaseAllocation());
        NbdSession session = new NbdSession(0, export, true, extended, contexts, true,
                export.transmissionFlags(true), NbdServerConfig.MAX_PAYLOAD);
        EmbeddedChannel ch = new EmbeddedChannel();
        ch.pipeline().addLast(new NbdRequestDecoder(extended, NbdServerConfig.MAX_PAYLOAD),
                new NbdReplyEncoder(extended),
                new NbdTransmissionHandler(session, Runnable::run, 64, 64L << 20));
        // Small ranges: the code path is what warms; a 4 GiB status of a fragmented image is
        // thousands of extents per request and made warm-up compete with clients for seconds.
        long statusLength = Math.min(size, 1 << 20);
        int readLength = (int) Math.min(size, 4096);
        try {
            for (int i = 0; i < n && !stop.getAsBoolean(); i++) {
                boolean status = (i & 1) == 0;
                ByteBuf req = ch.alloc().buffer(32);
                req.writeInt(extended ? NbdConstants.NBD_EXTENDED_REQUEST_MAGIC : NbdConstants.NBD_REQUEST_MAGIC);
                req.writeShort(0);
                req.writeShort(status ? NbdConstants.NBD_CMD_BLOCK_STATUS : NbdConstants.NBD_CMD_READ);
                req.writeLong(i);
                req.writeLong(0);
                long length = status ? statusLength : readLength;
                if (extended) {
                    req.writeLong(length);
                } else {
                    req.writeInt((int) length);
                }
                ch.writeInbound(req);
                ch.runPendingTasks();
                Object out;
                while ((out = ch.readOutbound()) != null) {
                    ReferenceCountUtil.release(out);
                }
            }
        } finally {
            ch.finishAndReleaseAll();
        }
    }
}
