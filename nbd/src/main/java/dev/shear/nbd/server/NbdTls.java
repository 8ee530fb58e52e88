package dev.shear.nbd.server;

import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * TLS server credentials laid out as QEMU's {@code tls-creds-x509} directory (nbd-protocol.md §2.7):
 * {@code ca-cert.pem}, {@code server-cert.pem}, {@code server-key.pem} (PKCS#8 PEM, as
 * {@code openssl req -newkey} writes it; a PKCS#1 "RSA PRIVATE KEY" must be converted with
 * {@code openssl pkcs8 -topk8 -nocrypt}). With {@code verifyPeer} clients must present a certificate
 * signed by the CA (QEMU's verify-peer=on).
 */
public final class NbdTls {
    public static final String CA_CERT = "ca-cert.pem";
    public static final String SERVER_CERT = "server-cert.pem";
    public static final String SERVER_KEY = "server-key.pem";

    private NbdTls() {
    }

    public static SslContext serverContext(Path dir, boolean verifyPeer) throws IOException {
        Path cert = dir.resolve(SERVER_CERT);
        Path key = dir.resolve(SERVER_KEY);
        Path ca = dir.resolve(CA_CERT);
        for (Path p : new Path[] {cert, key}) {
            if (!Files.isReadable(p)) {
                throw new IOException("tls-creds: " + p + " (expected: a readable PEM file)");
            }
        }
        if (verifyPeer && !Files.isReadable(ca)) {
            throw new IOException("tls-creds: " + ca + " (expected: a readable CA certificate for verify-peer)");
        }
        try {
            SslContextBuilder b = SslContextBuilder.forServer(cert.toFile(), key.toFile())
                    .sslProvider(SslProvider.JDK)
                    .protocols("TLSv1.3", "TLSv1.2");
            if (Files.isReadable(ca)) {
                b.trustManager(ca.toFile());
            }
            b.clientAuth(verifyPeer ? ClientAuth.REQUIRE : ClientAuth.NONE);
            return b.build();
        } catch (IOException | RuntimeException e) {
            throw new IOException("tls-creds: " + dir + ": " + e.getMessage(), e);
        }
    }
}
