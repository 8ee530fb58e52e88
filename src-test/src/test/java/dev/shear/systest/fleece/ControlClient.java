package dev.shear.systest.fleece;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.tools.Json;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.Tool;
import java.io.IOException;
import java.io.InputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/**
 * The control API of a running {@code shear serve --control} through curl (requests) and a raw Unix
 * socket ({@code GET /events}, read by a daemon thread), for the backup interop tests.
 */
final class ControlClient {
    private final Path socket;
    private final ShearProcess server;

    ControlClient(Path socket, ShearProcess server) {
        this.socket = socket;
        this.server = server;
    }

    /**
     * Starts {@code shear serve} on {@code image} with the control socket {@code ctl}, which listens
     * before the server prints its ready line.
     */
    static ShearProcess serve(Path nbd, String export, Path image, Path ctl) {
        ShearProcess p = ShearProcess.serve(nbd, export, image, "--control", ctl.toString());
        assertTrue(Files.exists(ctl), p.stderr());
        return p;
    }

    /** {status, body}. */
    String[] curl(String method, String path, String body) {
        List<String> args = new ArrayList<>(List.of("-s", "-w", "\n%{http_code}", "--unix-socket",
                socket.toString(), "-X", method, "http://shear" + path));
        if (body != null) {
            args.addAll(List.of("-H", "Content-Type: application/json", "-d", body));
        }
        String out = Tool.named("curl").check(args).stdout();
        int nl = out.lastIndexOf('\n');
        return new String[] {out.substring(nl + 1).trim(), out.substring(0, nl)};
    }

    /** The JSON of a 2xx reply; fails the test (with the server's stderr) otherwise. */
    JsonNode ok(String method, String path, String body) {
        String[] r = curl(method, path, body);
        assertTrue(r[0].startsWith("2"), () -> method + " " + path + ": " + r[0] + " " + r[1] + "\n"
                + server.stderr());
        return Json.parse(r[1], method + " " + path);
    }

    /** Polls job {@code id} until it leaves "running" (60 s at most) and asserts the state it reached. */
    JsonNode awaitState(String id, String state) {
        JsonNode j = awaitJob(id, n -> !n.get("state").asText().equals("running"));
        assertEquals(state, j.get("state").asText(), j.toString());
        return j;
    }

    /** Polls job {@code id} until {@code done} holds (60 s at most); returns the last status. */
    JsonNode awaitJob(String id, Predicate<JsonNode> done) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        JsonNode j;
        do {
            j = ok("GET", "/jobs/" + id, null);
            if (done.test(j)) {
                break;
            }
            pause();
        } while (System.nanoTime() < deadline);
        return j;
    }

    static void pause() {
        try {
            Thread.sleep(50);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Subscribes to {@code GET /events}; the stream's raw text accumulates until closed. */
    Events events() throws IOException {
        return new Events(socket);
    }

    /** An open {@code /events} stream. */
    static final class Events implements AutoCloseable {
        private final SocketChannel channel;
        private final StringBuffer text = new StringBuffer();   // appended by the reader thread

        Events(Path socket) throws IOException {
            channel = SocketChannel.open(StandardProtocolFamily.UNIX);
            channel.connect(UnixDomainSocketAddress.of(socket));
            channel.write(ByteBuffer.wrap("GET /events HTTP/1.1\r\nHost: shear\r\n\r\n"
                    .getBytes(StandardCharsets.US_ASCII)));
            Thread t = new Thread(() -> {
                byte[] b = new byte[8192];
                try (InputStream in = Channels.newInputStream(channel)) {
                    for (int n; (n = in.read(b)) > 0; ) {
                        text.append(new String(b, 0, n, StandardCharsets.UTF_8));
                    }
                } catch (IOException e) {
                    // closed by the test
                }
            }, "events reader");
            t.setDaemon(true);
            t.start();
        }

        /** True once {@code needle} appeared in the stream, waiting up to 30 s. */
        boolean await(String needle) {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (text.indexOf(needle) < 0 && System.nanoTime() < deadline) {
                pause();
            }
            return text.indexOf(needle) >= 0;
        }

        String text() {
            return text.toString();
        }

        @Override
        public void close() throws IOException {
            channel.close();
        }
    }
}
