package dev.shear.nbd.server;

import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.AdaptiveRecvByteBufAllocator;
import io.netty.channel.ChannelOption;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.IoHandlerFactory;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.ServerChannel;
import io.netty.channel.WriteBufferWaterMark;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.epoll.EpollServerDomainSocketChannel;
import io.netty.channel.epoll.EpollServerSocketChannel;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.nio.NioServerDomainSocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.channel.unix.DomainSocketAddress;
import io.netty.util.concurrent.DefaultThreadFactory;
import io.netty.util.concurrent.GlobalEventExecutor;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.UnixDomainSocketAddress;
import java.nio.file.Files;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The NBD server: listens on one Unix socket or TCP address and serves an {@link ExportRegistry}
 * (nbd-protocol.md; design.md §Performance model).
 *
 * <p>Threads: event loops decode, validate and encode; every device call runs on a bounded I/O pool
 * (event loops never touch the disk, except the kernel's sendfile of zero-copy regions). The native
 * epoll transport is used when available (TCP and Unix sockets), NIO otherwise (Unix sockets through
 * NioServerDomainSocketChannel, JDK 16+).
 *
 * <p>Lifecycle: {@link #start} binds; {@link #shutdown} stops accepting, lets every connection answer
 * its in-flight requests (handshaking ones are closed), waits for them to close, then flushes and
 * closes the devices. {@link #awaitTermination} returns once that is done.
 */
public final class NbdServer implements AutoCloseable {
    /** How long shutdown waits for connections to finish their in-flight requests. */
    private static final long DRAIN_TIMEOUT_MILLIS = 30_000;
    /**
     * When a connection stops being read for the replies it has not taken yet (NbdTransmissionHandler's
     * backpressure): above 4 MiB queued, again below 1 MiB. Netty's default, 64 KiB, is less than one
     * 256 KiB read reply, so a client reading with many requests in flight (nbdcopy: 64 per connection)
     * was read one request per drained reply. Memory stays bounded by the in-flight byte limit.
     */
    static final WriteBufferWaterMark REPLY_WATER_MARK = new WriteBufferWaterMark(1 << 20, 4 << 20);

    private final NbdServerConfig config;
    private final ExportRegistry exports;
    private final ExecutorService ioPool;
    private final ServerContext context;
    private final ChannelGroup connections = new DefaultChannelGroup("nbd-connections", GlobalEventExecutor.INSTANCE);
    private final AtomicInteger active = new AtomicInteger();
    /** Set once by shutdown(); read by every handshake. */
    private volatile boolean shuttingDown;
    private final Object lock = new Object();
    /** Guarded by lock. */
    private boolean terminated;
    private volatile Runnable onIdle;
    private EventLoopGroup group;
    /** Serves the connections of background exports (backup snapshots): see {@link BackupLoop}. */
    private volatile EventLoopGroup backupGroup;
    private Channel serverChannel;
    private String transport;
    private volatile Thread warmup;

    public NbdServer(NbdServerConfig config, ExportRegistry exports) {
        this.config = config;
        this.exports = exports;
        ThreadPoolExecutor pool = new ThreadPoolExecutor(config.ioThreads(), config.ioThreads(), 60,
                TimeUnit.SECONDS, new LinkedBlockingQueue<>(), new DefaultThreadFactory("nbd-io", true));
        pool.allowCoreThreadTimeOut(true);
        this.ioPool = pool;
        this.context = new ServerContext(exports, config, ioPool, () -> shuttingDown, () -> backupGroup);
    }

    /** Called (on an event loop) each time the last connected client leaves (qemu-nbd without -t). */
    public void onIdle(Runnable action) {
        this.onIdle = action;
    }

    ServerContext context() {
        return context;
    }

    /** "epoll" or "nio". */
    public String transport() {
        return transport;
    }

    /**
     * Starts a background thread that runs synthetic requests through the transmission path on the
     * first export (see {@link RequestPathWarmup}), so that the first clients meet compiled code; it
     * stops early on shutdown, which waits for it before closing the devices. Call after
     * {@link #start}, so that readiness is not delayed. {@code -Dshear.nbd.warmup=N}, 0 for none.
     */
    public void warmUp() {
        int n = RequestPathWarmup.requests();
        if (n <= 0 || exports.all().isEmpty()) {
            return;
        }
        Export export = exports.all().iterator().next();
        Thread t = new Thread(() -> {
            long ms = RequestPathWarmup.run(export, n, () -> shuttingDown);
            ServerLog.debug("warmup", "requests", n, "ms", ms);
        }, "nbd-warmup");
        t.setDaemon(true);
        warmup = t;
        t.start();
    }

    /** Binds and starts accepting. */
    public NbdServer start() throws IOException {
        boolean epoll = Epoll.isAvailable();
        IoHandlerFactory io = epoll ? EpollIoHandler.newFactory() : NioIoHandler.newFactory();
        transport = epoll ? "epoll" : "nio";
        group = new MultiThreadIoEventLoopGroup(NbdServerConfig.eventLoops(),
                new DefaultThreadFactory("nbd-loop", true), io);
        backupGroup = new MultiThreadIoEventLoopGroup(NbdServerConfig.backupLoops(),
                new DefaultThreadFactory(BackupLoop.THREAD_NAME, true), io);
        Class<? extends ServerChannel> channelClass;
        SocketAddress address;
        if (config.unixSocket() != null) {
            Files.deleteIfExists(config.unixSocket());
            channelClass = epoll ? EpollServerDomainSocketChannel.class : NioServerDomainSocketChannel.class;
            address = epoll ? new DomainSocketAddress(config.unixSocket().toFile())
                    : UnixDomainSocketAddress.of(config.unixSocket());
        } else {
            channelClass = epoll ? EpollServerSocketChannel.class : NioServerSocketChannel.class;
            address = config.tcp();
        }
        ServerBootstrap b = new ServerBootstrap()
                .group(group)
                .channel(channelClass)
                .childOption(ChannelOption.RCVBUF_ALLOCATOR,
                        new AdaptiveRecvByteBufAllocator(4096, 65536, 1 << 20))
                .childOption(ChannelOption.WRITE_BUFFER_WATER_MARK, REPLY_WATER_MARK)
                .childOption(ChannelOption.ALLOCATOR, RecyclingAllocator.DEFAULT)
                .childHandler(new NbdChannelInitializer(this));
        try {
            serverChannel = b.bind(address).syncUninterruptibly().channel();
        } catch (RuntimeException e) {
            group.shutdownGracefully(0, 0, TimeUnit.MILLISECONDS);
            backupGroup.shutdownGracefully(0, 0, TimeUnit.MILLISECONDS);
            ioPool.shutdownNow();
            throw new IOException("listen: " + describe(address) + ": " + e.getMessage(), e);
        }
        ServerLog.info("listening", "address", describe(serverChannel.localAddress()), "transport", transport,
                "exports", exports.all().size(), "tls", config.ssl() != null);
        return this;
    }

    /** The bound TCP port (after start; useful with port 0). */
    public int port() {
        return ((InetSocketAddress) serverChannel.localAddress()).getPort();
    }

    /** Accounts a new connection; false if it must be refused (limit reached or shutting down). */
    boolean admit(Channel ch, long id) {
        if (shuttingDown) {
            return false;
        }
        int n = active.incrementAndGet();
        if (n > config.maxConnections()) {
            active.decrementAndGet();
            ServerLog.warn("connection-refused", "conn", id, "remote", describe(ch.remoteAddress()),
                    "reason", "too many clients", "limit", config.maxConnections());
            return false;
        }
        connections.add(ch);
        ServerLog.info("connect", "conn", id, "remote", describe(ch.remoteAddress()), "clients", n);
        ch.closeFuture().addListener(f -> {
            int left = active.decrementAndGet();
            ServerLog.info("disconnect", "conn", id, "clients", left);
            Runnable idle = onIdle;
            if (left == 0 && idle != null && !shuttingDown) {
                idle.run();
            }
        });
        return true;
    }

    public boolean isShuttingDown() {
        return shuttingDown;
    }

    /**
     * Stops accepting, drains every connection (in-flight requests are answered), waits for them to
     * close, then flushes and closes the devices. Idempotent; blocks until done. Must not be called from
     * an event loop.
     */
    public void shutdown() throws IOException {
        synchronized (lock) {
            if (terminated) {
                return;
            }
            shuttingDown = true;
            ServerLog.info("shutdown", "clients", active.get());
            if (serverChannel != null) {
                serverChannel.close().syncUninterruptibly();
            }
            for (Channel ch : connections) {
                ch.eventLoop().execute(() -> drain(ch));
            }
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(DRAIN_TIMEOUT_MILLIS);
            for (Channel ch : connections) {
                long left = deadline - System.nanoTime();
                if (left <= 0 || !ch.closeFuture().awaitUninterruptibly(TimeUnit.NANOSECONDS.toMillis(left))) {
                    ch.close();
                }
            }
            connections.close().awaitUninterruptibly();
            Thread w = warmup;
            if (w != null) {
                try {
                    w.join(DRAIN_TIMEOUT_MILLIS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            ioPool.shutdown();
            try {
                if (!ioPool.awaitTermination(DRAIN_TIMEOUT_MILLIS, TimeUnit.MILLISECONDS)) {
                    ioPool.shutdownNow();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            if (group != null) {
                group.shutdownGracefully(0, 2, TimeUnit.SECONDS).syncUninterruptibly();
                backupGroup.shutdownGracefully(0, 2, TimeUnit.SECONDS).syncUninterruptibly();
            }
            if (config.unixSocket() != null) {
                Files.deleteIfExists(config.unixSocket());
            }
            try {
                exports.flushAndClose();
            } finally {
                terminated = true;
                lock.notifyAll();
                ServerLog.info("stopped");
            }
        }
    }

    /** Transmission: finish in-flight requests then close; handshake: close now. On the event loop. */
    private static void drain(Channel ch) {
        ChannelHandlerContext ctx = ch.pipeline().context(NbdHandshakeHandler.TRANSMISSION);
        if (ctx != null) {
            ((NbdTransmissionHandler) ctx.handler()).drain(ctx);
        } else {
            ch.close();
        }
    }

    /** Blocks until {@link #shutdown} completed. */
    public void awaitTermination() throws InterruptedException {
        synchronized (lock) {
            while (!terminated) {
                lock.wait();
            }
        }
    }

    @Override
    public void close() throws IOException {
        shutdown();
    }

    static String describe(SocketAddress a) {
        if (a == null) {
            return "unix";
        }
        if (a instanceof DomainSocketAddress d) {
            return d.path().isEmpty() ? "unix" : d.path();
        }
        if (a instanceof UnixDomainSocketAddress u) {
            return u.getPath().toString().isEmpty() ? "unix" : u.getPath().toString();
        }
        if (a instanceof InetSocketAddress i) {
            return i.getHostString() + ":" + i.getPort();
        }
        return a.toString();
    }
}
