package dev.shear.nbd.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.netty.bootstrap.Bootstrap;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollDomainSocketChannel;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.epoll.EpollServerDomainSocketChannel;
import io.netty.channel.epoll.EpollServerSocketChannel;
import io.netty.channel.epoll.EpollSocketChannel;
import io.netty.channel.unix.DomainSocketAddress;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** A backup connection's send buffer: enlarged on a Unix socket, the kernel's own on TCP. */
@Timeout(30)
class BackupSendBufferTest {
    @TempDir
    Path dir;

    private EventLoopGroup group;

    @BeforeEach
    void setUp() {
        assumeTrue(Epoll.isAvailable(), "needs the epoll transport (Linux)");
        group = new MultiThreadIoEventLoopGroup(1, EpollIoHandler.newFactory());
    }

    @AfterEach
    void tearDown() {
        if (group != null) {
            group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
        }
    }

    @Test
    void aUnixSocketBackupConnectionGetsTheLargerSendBuffer() throws Exception {
        CompletableFuture<Channel> accepted = new CompletableFuture<>();
        DomainSocketAddress address = new DomainSocketAddress(dir.resolve("s.sock").toFile());
        Channel server = new ServerBootstrap().group(group).channel(EpollServerDomainSocketChannel.class)
                .childHandler(capture(accepted)).bind(address).sync().channel();
        Channel client = new Bootstrap().group(group).channel(EpollDomainSocketChannel.class)
                .handler(new ChannelInboundHandlerAdapter()).connect(address).sync().channel();
        try {
            Channel ch = accepted.get(10, TimeUnit.SECONDS);
            int before = ch.config().getOption(ChannelOption.SO_SNDBUF);
            BackupLoop.enlargeSendBuffer(ch);
            int after = ch.config().getOption(ChannelOption.SO_SNDBUF);
            // Linux stores twice what was asked, capped at twice net.core.wmem_max.
            int asked = NbdServerConfig.backupSendBuffer();
            long wmemMax = wmemMax();
            int expected = (int) (2 * Math.min(asked, wmemMax));
            assertEquals(expected, after,
                    "SO_SNDBUF " + before + " -> " + after + ", asked " + asked + ", wmem_max " + wmemMax);
            assertTrue(after > before, "the send buffer grew: " + before + " -> " + after);
        } finally {
            client.close().sync();
            server.close().sync();
        }
    }

    @Test
    void aTcpBackupConnectionKeepsTheKernelsAutotuning() throws Exception {
        CompletableFuture<Channel> accepted = new CompletableFuture<>();
        Channel server = new ServerBootstrap().group(group).channel(EpollServerSocketChannel.class)
                .childHandler(capture(accepted)).bind(new InetSocketAddress("127.0.0.1", 0)).sync().channel();
        Channel client = new Bootstrap().group(group).channel(EpollSocketChannel.class)
                .handler(new ChannelInboundHandlerAdapter()).connect(server.localAddress()).sync().channel();
        try {
            Channel ch = accepted.get(10, TimeUnit.SECONDS);
            int before = ch.config().getOption(ChannelOption.SO_SNDBUF);
            BackupLoop.enlargeSendBuffer(ch);
            assertEquals(before, ch.config().getOption(ChannelOption.SO_SNDBUF), "TCP's SO_SNDBUF was set");
        } finally {
            client.close().sync();
            server.close().sync();
        }
    }

    private static ChannelHandler capture(CompletableFuture<Channel> accepted) {
        return new ChannelInboundHandlerAdapter() {
            @Override
            public void channelActive(io.netty.channel.ChannelHandlerContext ctx) {
                accepted.complete(ctx.channel());
            }
        };
    }

    private static long wmemMax() throws Exception {
        // Files.readString trusts the size procfs reports and came back with one digit.
        try (var in = Files.newInputStream(Path.of("/proc/sys/net/core/wmem_max"))) {
            return Long.parseLong(new String(in.readAllBytes(), java.nio.charset.StandardCharsets.US_ASCII).trim());
        }
    }
}
