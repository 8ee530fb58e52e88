package dev.shear.nbd.server;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Generates a CA and a server certificate with openssl, in QEMU's tls-creds-x509 layout. Skips the
 * test (JUnit assumption) when openssl is not installed.
 */
final class TlsFixtures {
    private TlsFixtures() {
    }

    static Path create(Path dir) throws IOException, InterruptedException {
        Files.createDirectories(dir);
        run(dir, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=shear-test-ca",
                "-keyout", "ca-key.pem", "-out", "ca-cert.pem");
        run(dir, "openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                "-keyout", "server-key.pem", "-out", "server.csr");
        run(dir, "openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-days", "2", "-out", "server-cert.pem");
        run(dir, "openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=client",
                "-keyout", "client-key.pem", "-out", "client.csr");
        run(dir, "openssl", "x509", "-req", "-in", "client.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-days", "2", "-out", "client-cert.pem");
        return dir;
    }

    private static void run(Path dir, String... cmd) throws IOException, InterruptedException {
        Process p;
        try {
            p = new ProcessBuilder(List.of(cmd)).directory(dir.toFile()).redirectErrorStream(true)
                    .redirectOutput(dir.resolve("openssl.log").toFile()).start();
        } catch (IOException e) {
            assumeTrue(false, "openssl not available: " + e.getMessage());
            return;
        }
        if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
            p.destroyForcibly();
            throw new IOException(String.join(" ", cmd) + ": " + Files.readString(dir.resolve("openssl.log")));
        }
    }
}
