package dev.shear.nbd.server;

import io.netty.channel.Channel;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoop;
import io.netty.channel.unix.DomainSocketAddress;
import java.net.UnixDomainSocketAddress;
import java.util.concurrent.Executor;

/**
 * Where a background export's connection (a backup client reading a snapshot) is served: on an event
 * loop of its own group, never on the loops or the I/O pool that serve the guest. Once its handshake
 * ends, the connection is moved to one of these loops ({@link #adopt}) and its requests run right there,
 * decoded, executed and answered by the same thread, with no hand-off.
 *
 * <p>Why: on a small host the guest's write latency under a backup was made of waiting, for a pool thread
 * busy with snapshot reads, for an event loop busy sending their replies, and for the CPU that the
 * hand-offs of every read kept busy (2 cores, fleece-anchor: the slowest 1% of writes waited 1.0-1.4 ms
 * in the pool's queue and 1.9-3.7 ms for their reply to be written, behind backup work). Now no guest
 * request waits behind backup work in any queue of the server; backup and guest only meet in the
 * copy-before-write cluster locks and in the CPU.
 *
 * <p>The exception to design.md's "network threads never block on disk" is deliberate and confined: a
 * backup loop blocks on the disk (and on cluster locks) for its own backup clients only. A slow read
 * there stalls other backup connections on the same loop, which share one reader anyway; it never
 * stalls a guest. The group's size is {@link NbdServerConfig#backupLoops()}.
 *
 * <p>A backup connection on a Unix socket gets a larger send buffer ({@link
 * NbdServerConfig#backupSendBuffer()}, 2 MiB asked) than the system's 208 KiB, which is less than one
 * 256 KiB read reply of nbdcopy's: every reply took several hand-offs between a backup loop waiting for
 * the socket to drain and a client waiting for the rest of its reply, each one a wait for the CPU on a
 * busy host. fleece-matrix, 2 cores, writer running: snapshot read 620 -> 883 MiB/s. TCP connections
 * keep the kernel's autotuning, which a fixed size would turn off.
 *
 * <p>Requests that reach {@link #execute} before the move has finished (bytes a client pipelined behind
 * its handshake) are handed to the backup loop like any task; their replies hop to whichever loop the
 * channel is on, as every reply does.
 */
final class BackupLoop implements Executor {
    /** The backup loops' thread names start with this. */
    static final String THREAD_NAME = "nbd-backup-loop";

    private final EventLoop loop;

    BackupLoop(EventLoop loop) {
        this.loop = loop;
    }

    /** Runs {@code task} now when called on the backup loop (the usual case), else queues it there. */
    @Override
    public void execute(Runnable task) {
        if (loop.inEventLoop()) {
            task.run();
        } else {
            loop.execute(task);
        }
    }

    /**
     * Moves {@code ch} (autoRead off, its transmission handlers installed) from the loop it was accepted on
     * to this backup loop, then turns reading on there. A failure closes the connection.
     */
    void adopt(Channel ch, long connectionId) {
        ch.deregister().addListener(d -> {
            if (!d.isSuccess()) {
                ServerLog.warn("backup-loop-failed", "conn", connectionId, "step", "deregister",
                        "message", String.valueOf(d.cause()));
                ch.close();
                return;
            }
            loop.register(ch).addListener(r -> {
                if (r.isSuccess()) {
                    enlargeSendBuffer(ch);
                    ch.config().setAutoRead(true);
                } else {
                    ServerLog.warn("backup-loop-failed", "conn", connectionId, "step", "register",
                            "message", String.valueOf(r.cause()));
                    ch.close();
                }
            });
        });
    }

    /** Asks for {@link NbdServerConfig#backupSendBuffer()} on a Unix socket connection; TCP is left alone. */
    static void enlargeSendBuffer(Channel ch) {
        int bytes = NbdServerConfig.backupSendBuffer();
        boolean unix = ch.localAddress() instanceof DomainSocketAddress
                || ch.localAddress() instanceof UnixDomainSocketAddress;
        if (bytes > 0 && unix && !ch.config().setOption(ChannelOption.SO_SNDBUF, bytes)) {
            ServerLog.warn("backup-send-buffer", "message",
                    "SO_SNDBUF not supported by " + ch.getClass().getSimpleName());
        }
    }
}
