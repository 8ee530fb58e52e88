package dev.shear.systest.nbd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.systest.images.ImageMatrix;
import dev.shear.systest.tools.NbdCopy;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.Tool;
import dev.shear.systest.tools.ToolPaths;
import dev.shear.systest.tools.ToolRequirement;
import dev.shear.systest.tools.ToolResult;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Server lifecycle under real clients: SIGTERM while reads are in flight (they are answered, the exit
 * status is 0), sixteen {@code nbdinfo} at once, and a client that stops reading its replies while
 * another copies the whole disk.
 */
@RequiresTools({"nbdinfo", "nbdcopy", "curl", ToolRequirement.PYTHON_LIBNBD})
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class NbdLifecycleStressTest {
    static final int MIB = 1 << 20;
    static final Duration DEADLINE = Duration.ofSeconds(30);

    /**
     * Sends N reads of 4 MiB without reading a reply, says "sent", waits for one line on stdin (the
     * test's go-ahead; EOF also counts), then collects the replies and prints "ok K" or the error.
     */
    static final String PENDING_READS = String.join("\n",
            "import sys, nbd",
            "h = nbd.NBD()",
            "h.connect_uri(sys.argv[1])",
            "n = int(sys.argv[2])",
            "bufs = [nbd.Buffer(4 << 20) for _ in range(n)]",
            "cookies = [h.aio_pread(bufs[i], (i % 8) * (4 << 20)) for i in range(n)]",
            "print('sent', flush=True)",
            "sys.stdin.readline()",
            "ok = 0",
            "for c in cookies:",
            "    while not h.aio_command_completed(c):",
            "        h.poll(-1)",
            "    ok += 1",
            "expected = open(sys.argv[3], 'rb').read()",
            "for i in range(n):",
            "    o = (i % 8) * (4 << 20)",
            "    assert bufs[i].to_bytearray() == expected[o:o + (4 << 20)], 'read %d: wrong bytes' % i",
            "print('ok', ok, flush=True)",
            "");

    @TempDir
    Path dir;

    private Path image;
    private ShearProcess server;
    private final List<Process> clients = new ArrayList<>();

    /** 32 MiB raw of random bytes: every read carries data. */
    @BeforeEach
    void makeImage() {
        image = dir.resolve("disk.raw");
        ImageMatrix.writeRandomFile(image, 32 * MIB, 7);
    }

    @AfterEach
    void stop() {
        clients.forEach(Process::destroyForcibly);
        if (server != null) {
            server.close();
        }
    }

    private Process startPendingReads(String uri, int reads) throws Exception {
        Path py = ToolPaths.python3WithLibnbd().orElseThrow();
        Process p = new ProcessBuilder(py.toString(), "-c", PENDING_READS, uri, String.valueOf(reads),
                image.toString()).directory(dir.toFile()).redirectError(dir.resolve("client.err").toFile()).start();
        clients.add(p);
        return p;
    }

    @Test
    void sigtermWithReadsInFlightShouldAnswerThemAndExitZero() throws Exception {
        Path ctl = dir.resolve("ctl.sock");
        server = ShearProcess.serve(dir.resolve("s.sock"), "disk", image, "-r", "-f", "raw",
                "--control", ctl.toString());
        Process client = startPendingReads(server.uri(), 12);
        BufferedReader out = new BufferedReader(new InputStreamReader(client.getInputStream(), StandardCharsets.UTF_8));
        assertEquals("sent", out.readLine(), Files.readString(dir.resolve("client.err")));
        // "Sent" is not "received": requests still unread in the server's socket when the SIGTERM lands are
        // never answered (nothing is read after it), so wait until the server has executed all 12.
        awaitReadsExecuted(ctl, 12);
        // 48 MiB of replies cannot fit in the socket: the server holds them in flight while we stop it.
        server.terminate();
        try (OutputStream go = client.getOutputStream()) {
            go.write('\n');
        }
        assertTrue(client.waitFor(DEADLINE.toSeconds(), TimeUnit.SECONDS), "client finished");
        String result = out.readLine();
        assertEquals("ok 12", result, "every read in flight answered with the right bytes; client stderr:\n"
                + Files.readString(dir.resolve("client.err")) + "\nserver:\n" + server.stderr());
        // 0, not 143: the SIGTERM handler drained and flushed rather than the JVM dying of the signal.
        assertEquals(0, server.awaitExit(DEADLINE), "exit status after SIGTERM\n" + server.stderr());
    }

    /** Polls the control API's {@code /metrics} (10 s at most) until {@code n} READs have been executed. */
    private void awaitReadsExecuted(Path ctl, int n) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        String metrics;
        do {
            metrics = Tool.named("curl").check("-s", "--unix-socket", ctl.toString(), "http://shear/metrics").stdout();
            java.util.regex.Matcher m = java.util.regex.Pattern
                    .compile("(?m)^shear_nbd_requests_total\\{command=\"read\"\\} (\\d+)$").matcher(metrics);
            if (m.find() && Long.parseLong(m.group(1)) >= n) {
                return;
            }
            Thread.sleep(20);
        } while (System.nanoTime() < deadline);
        throw new AssertionError("the server did not execute " + n + " reads within 10 s; /metrics:\n" + metrics
                + "\nserver:\n" + server.stderr());
    }

    @Test
    void sixteenClientsAtOnceShouldAllBeServed() throws Exception {
        server = ShearProcess.serve(dir.resolve("s.sock"), "disk", image, "-r", "-f", "raw");
        ExecutorService pool = Executors.newFixedThreadPool(16);
        try {
            List<Future<ToolResult>> runs = new ArrayList<>();
            for (int i = 0; i < 16; i++) {
                runs.add(pool.submit(() -> Tool.named("nbdinfo").run("--map", server.uri())));
            }
            for (Future<ToolResult> f : runs) {
                ToolResult r = f.get(DEADLINE.toSeconds(), TimeUnit.SECONDS);
                assertEquals(0, r.exitCode(), r + "\nserver:\n" + server.stderr());
                assertTrue(r.stdout().contains("data"), r.stdout());
            }
        } finally {
            pool.shutdownNow();
        }
        assertTrue(server.isAlive());
    }

    @Test
    void clientThatStopsReadingShouldNotStallOthers() throws Exception {
        server = ShearProcess.serve(dir.resolve("s.sock"), "disk", image, "-r", "-f", "raw");
        Process staller = startPendingReads(server.uri(), 32);
        BufferedReader out = new BufferedReader(
                new InputStreamReader(staller.getInputStream(), StandardCharsets.UTF_8));
        assertEquals("sent", out.readLine(), Files.readString(dir.resolve("client.err")));
        // The staller never reads (it waits on stdin); meanwhile whole-disk copies must go through.
        for (int i = 0; i < 3; i++) {
            Path copy = dir.resolve("copy" + i + ".raw");
            new NbdCopy(Tool.named("nbdcopy").withTimeout(DEADLINE)).copy(server.uri(), copy.toString(),
                    "--connections=2", "--threads=2");
            assertArrayEquals(Files.readAllBytes(image), Files.readAllBytes(copy), "copy " + i);
        }
        assertTrue(staller.isAlive(), "the staller is still blocked, holding its replies");
        staller.getOutputStream().close();
        assertTrue(staller.waitFor(DEADLINE.toSeconds(), TimeUnit.SECONDS));
        assertEquals("ok 32", out.readLine(), Files.readString(dir.resolve("client.err")));
    }
}
