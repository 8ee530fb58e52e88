package dev.shear.nbd.server;

import io.netty.channel.Channel;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.socket.SocketChannel;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Sets up each accepted connection: TCP_NODELAY on TCP (nbd-protocol.md §1), the handshake handlers,
 * and the connection accounting of {@link NbdServer}.
 */
final class NbdChannelInitializer extends ChannelInitializer<Channel> {
    private final NbdServer server;
    private final AtomicLong ids = new AtomicLong();

    NbdChannelInitializer(NbdServer server) {
        this.server = server;
    }

    @Override
    protected void initChannel(Channel ch) {
        long id = ids.incrementAndGet();
        if (ch instanceof SocketChannel) {
            ch.config().setOption(ChannelOption.TCP_NODELAY, true);
        }
        if (!server.admit(ch, id)) {
            ch.close();
            return;
        }
        NbdHandshakeHandler.install(ch.pipeline(), server.context(), id);
    }
}
