package dev.shear.nbd.server;

import io.netty.handler.ssl.SslContext;
import java.net.InetSocketAddress;
import java.nio.file.Path;

/**
 * How a server listens and what it bounds.
 *
 * @param unixSocket       a Unix socket path, or null
 * @param tcp              a TCP address, or null (exactly one of unixSocket and tcp is set)
 * @param maxConnections   clients at once (qemu-nbd -e); more are refused at accept
 * @param maxInFlight      requests in flight per connection before reading stops (QEMU reads 16 ahead,
 *                         nbdcopy keeps 64 in flight)
 * @param maxInFlightBytes read/write bytes in flight per connection before reading stops
 * @param ioThreads        threads of the I/O pool that runs every device call
 * @param ssl              TLS server context, or null
 * @param tlsRequired      refuse every option but STARTTLS (and ABORT) before TLS (FORCEDTLS)
 * @param maxOptionLength  largest option data (four 4 KiB strings and more fit many times over)
 * @param maxOptions       options per connection before hanging up
 */
public record NbdServerConfig(Path unixSocket, InetSocketAddress tcp, int maxConnections, int maxInFlight,
        long maxInFlightBytes, int ioThreads, SslContext ssl, boolean tlsRequired, int maxOptionLength,
        int maxOptions) {

    /** The maximum payload advertised and accepted: 32 MiB, the size every NBD client assumes (§9). */
    public static final int MAX_PAYLOAD = 32 << 20;
    public static final int DEFAULT_MAX_IN_FLIGHT = 64;
    public static final long DEFAULT_MAX_IN_FLIGHT_BYTES = 64L << 20;
    /** Option data cap: QEMU hangs up above 32 MiB; ours carry a few 4 KiB strings, so 64 KiB. */
    public static final int DEFAULT_MAX_OPTION_LENGTH = 64 << 10;
    /** nbdinfo --list sends 2 options per export plus a few; 4096 leaves room for big export lists. */
    public static final int DEFAULT_MAX_OPTIONS = 4096;

    public NbdServerConfig {
        if ((unixSocket == null) == (tcp == null)) {
            throw new IllegalArgumentException("listen: exactly one of a Unix socket and a TCP address");
        }
        if (maxConnections < 1 || maxInFlight < 1 || ioThreads < 1) {
            throw new IllegalArgumentException("maxConnections, maxInFlight, ioThreads: expected >= 1");
        }
        if (tlsRequired && ssl == null) {
            throw new IllegalArgumentException("tlsRequired: true (expected: TLS credentials)");
        }
    }

    /** Defaults for a Unix socket. */
    public static NbdServerConfig unix(Path socket) {
        return new NbdServerConfig(socket, null, 16, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_BYTES,
                defaultIoThreads(), null, false, DEFAULT_MAX_OPTION_LENGTH, DEFAULT_MAX_OPTIONS);
    }

    /** Defaults for TCP. */
    public static NbdServerConfig tcp(InetSocketAddress address) {
        return new NbdServerConfig(null, address, 16, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_BYTES,
                defaultIoThreads(), null, false, DEFAULT_MAX_OPTION_LENGTH, DEFAULT_MAX_OPTIONS);
    }

    public NbdServerConfig withMaxConnections(int n) {
        return new NbdServerConfig(unixSocket, tcp, n, maxInFlight, maxInFlightBytes, ioThreads, ssl,
                tlsRequired, maxOptionLength, maxOptions);
    }

    public NbdServerConfig withInFlight(int requests, long bytes) {
        return new NbdServerConfig(unixSocket, tcp, maxConnections, requests, bytes, ioThreads, ssl,
                tlsRequired, maxOptionLength, maxOptions);
    }

    public NbdServerConfig withTls(SslContext context, boolean required) {
        return new NbdServerConfig(unixSocket, tcp, maxConnections, maxInFlight, maxInFlightBytes, ioThreads,
                context, required, maxOptionLength, maxOptions);
    }

    public NbdServerConfig withOptionLimits(int length, int count) {
        return new NbdServerConfig(unixSocket, tcp, maxConnections, maxInFlight, maxInFlightBytes, ioThreads,
                ssl, tlsRequired, length, count);
    }

    /**
     * Disk-bound work: a few threads per core, at least 4 (2-core machines still overlap I/O);
     * {@code -Dshear.nbd.ioThreads=N} for measurements.
     */
    static int defaultIoThreads() {
        return Integer.getInteger("shear.nbd.ioThreads", Math.max(4, 2 * cores()));
    }

    /** The guests' event loops: one per core, at least 2; {@code -Dshear.nbd.eventLoops=N}. */
    static int eventLoops() {
        return Integer.getInteger("shear.nbd.eventLoops", Math.max(2, cores()));
    }

    /** The backup loops ({@link BackupLoop}): half the cores, at least 1; {@code -Dshear.nbd.backupLoops=N}. */
    static int backupLoops() {
        return Integer.getInteger("shear.nbd.backupLoops", Math.max(1, cores() / 2));
    }

    /**
     * The socket send buffer asked for a backup client's Unix socket connection ({@link BackupLoop}):
     * 2 MiB, {@code -Dshear.nbd.backupSendBuffer=BYTES} (0 keeps the system's default). The kernel caps it
     * at net.core.wmem_max and doubles it for its bookkeeping.
     */
    static int backupSendBuffer() {
        return Integer.getInteger("shear.nbd.backupSendBuffer", 2 << 20);
    }

    private static int cores() {
        return Runtime.getRuntime().availableProcessors();
    }
}
