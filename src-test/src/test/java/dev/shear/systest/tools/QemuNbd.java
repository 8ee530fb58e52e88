package dev.shear.systest.tools;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * {@code qemu-nbd} serving one image on a Unix socket in a directory the test owns. {@link #start}
 * returns once the socket accepts a connection (polled against a deadline; the poll interval is a
 * bounded wait on the process, so a server that dies is noticed at once). {@link #close()} kills it.
 *
 * <p>{@code --persistent} is always passed: the readiness probe is a client too, and without it
 * qemu-nbd would exit when the probe disconnects.
 */
public final class QemuNbd implements AutoCloseable {
    public static final Duration START_TIMEOUT = Duration.ofSeconds(15);
    private static final Duration POLL = Duration.ofMillis(20);
    private static final AtomicInteger SEQUENCE = new AtomicInteger();

    private final BackgroundProcess process;
    private final Path socket;
    private final String exportName;

    private QemuNbd(BackgroundProcess process, Path socket, String exportName) {
        this.process = process;
        this.socket = socket;
        this.exportName = exportName;
    }

    /**
     * Starts {@code qemu-nbd --persistent --socket=DIR/qemu-nbd-N.sock --format=FORMAT
     * --export-name=NAME EXTRA… IMAGE} (add e.g. {@code --read-only}, {@code --bitmap=NAME},
     * {@code --allocation-depth} in {@code extraArgs}).
     */
    public static QemuNbd start(Path dir, Path image, String format, String exportName, List<String> extraArgs) {
        Path socket = dir.resolve("qemu-nbd-" + SEQUENCE.incrementAndGet() + ".sock");
        List<String> cmd = new ArrayList<>(List.of("qemu-nbd", "--persistent", "--socket=" + socket,
                "--format=" + format, "--export-name=" + exportName));
        cmd.addAll(extraArgs);
        cmd.add(image.toString());
        BackgroundProcess p = BackgroundProcess.start(cmd);
        try {
            awaitAccepting(p, socket, START_TIMEOUT);
        } catch (RuntimeException e) {
            p.close();
            throw e;
        }
        return new QemuNbd(p, socket, exportName);
    }

    /**
     * Polls until {@code socket} accepts a connection and the server greets it ("NBDMAGIC"); fails if the
     * process exits or time runs out. The greeting matters: qemu-nbd listens before it opens the image,
     * so a connection can be accepted by a server that is about to exit with an error.
     */
    static void awaitAccepting(BackgroundProcess p, Path socket, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        IOException last = null;
        while (System.nanoTime() < deadline) {
            try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
                ch.connect(UnixDomainSocketAddress.of(socket));
                if (greeted(ch, deadline)) {
                    return;
                }
                last = new IOException("connection closed before the NBD greeting");
            } catch (IOException e) {
                last = e;
            }
            if (p.waitExit(POLL)) {
                throw p.failure("exited before accepting on " + socket);
            }
        }
        throw p.failure("socket " + socket + " not accepting within " + timeout.toMillis() + " ms (last: "
                + last + ")");
    }

    /** Reads the first 8 bytes the server sends; true if they are "NBDMAGIC". */
    private static boolean greeted(SocketChannel ch, long deadline) throws IOException {
        ch.configureBlocking(false);
        ByteBuffer magic = ByteBuffer.allocate(8);
        while (magic.hasRemaining() && System.nanoTime() < deadline) {
            int n = ch.read(magic);
            if (n < 0) {
                return false;
            }
            if (n == 0) {
                LockSupport.parkNanos(POLL.toNanos() / 10);
            }
        }
        return !magic.hasRemaining()
                && "NBDMAGIC".equals(new String(magic.array(), StandardCharsets.US_ASCII));
    }

    public Path socket() {
        return socket;
    }

    /** The NBD URI of the export: {@code nbd+unix:///NAME?socket=PATH}. */
    public String uri() {
        return "nbd+unix:///" + exportName + "?socket=" + socket;
    }

    /** What qemu-nbd wrote on stderr so far. */
    public String stderr() {
        return process.stderr();
    }

    public boolean isAlive() {
        return process.isAlive();
    }

    @Override
    public void close() {
        process.close();
    }
}
