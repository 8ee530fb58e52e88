package dev.shear.systest.nbd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.systest.tools.NbdCopy;
import dev.shear.systest.tools.NbdInfo;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.Tool;
import java.io.File;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code bin/qemu-nbd} as a drop-in: a directory with a {@code qemu-nbd} symlink to it goes first on
 * PATH, and the exact argument lists of the tools that start qemu-nbd by name are run, as they run
 * them (output to a log file, the caller waits for the command to return):
 * <ul>
 *   <li>virtnbdbackup offline backup ({@code libvirtnbdbackup/qemu/util.py startBackupNbdServer}):
 *       {@code -r --format=qcow2 -x sda IMAGE -k SOCK -t "-e 2" --fork --detect-zeroes=on
 *       --pid-file=SOCK.pid --}, "-e 2" one token, "--" last when no bitmap;</li>
 *   <li>virtnbdbackup restore ({@code startRestoreNbdServer}): {@code --discard=unmap --format=qcow2 -x sda
 *       TARGET -k SOCK --fork} into a qcow2 target (lazy refcounts, so that the clean exit after the
 *       last client is visible as a cleared dirty bit), and the same with {@code --format=raw};</li>
 *   <li>ovirt-imageio ({@code ovirt_imageio/_internal/qemu_nbd.py Server.start}): {@code --export-name=
 *       --persistent --shared=8 --socket=SOCK --read-only --cache=none --aio=native --discard=unmap
 *       --detect-zeroes=unmap --allocation-depth json:{...}}, its {@code qemu-nbd --version} probe, and
 *       the {@code --image-opts} spelling.</li>
 * </ul>
 */
@RequiresTools({"qemu-img", "qemu-io", "nbdcopy", "nbdinfo"})
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class QemuNbdDropInInteropTest {
    static final Duration DEADLINE = Duration.ofSeconds(30);

    @TempDir
    Path dir;

    private Path pathDir;
    private Path image;
    private Path reference;
    private final List<ProcessHandle> started = new ArrayList<>();

    @BeforeEach
    void setUp() throws IOException {
        Path wrapper = ShearProcess.jar().toAbsolutePath().getParent().getParent().getParent()
                .resolve("bin/qemu-nbd");
        assertTrue(Files.isExecutable(wrapper), wrapper.toString());
        pathDir = Files.createDirectories(dir.resolve("bin"));
        Files.createSymbolicLink(pathDir.resolve("qemu-nbd"), wrapper);
        image = dir.resolve("vm.qcow2");
        new QemuImg().create(image, "qcow2", 8L << 20);
        new QemuIo().run(image, "qcow2", List.of(QemuIo.write(0x3c, 0, 1 << 20),
                QemuIo.write(0x3d, 5L << 20, 12345), QemuIo.writeZeroes(2 << 20, 1 << 20, false)));
        reference = dir.resolve("vm.raw");
        new QemuImg().convertToRaw(image, "qcow2", reference);
    }

    @AfterEach
    void killLeftovers() {
        for (ProcessHandle p : started) {
            p.destroyForcibly();
        }
    }

    /** Runs {@code qemu-nbd ARGS} found on PATH, output to a log file; returns the finished process. */
    private Process runQemuNbd(List<String> args, boolean waitForExit) throws Exception {
        // Through env(1): Java looks a bare program name up on its own PATH, not on the child's.
        List<String> cmd = new ArrayList<>(List.of("/usr/bin/env", "qemu-nbd"));
        cmd.addAll(args);
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(dir.resolve("qemu-nbd.log").toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        pb.environment().put("PATH", pathDir + File.pathSeparator + System.getenv("PATH"));
        Process p = pb.start();
        started.add(p.toHandle());
        if (waitForExit) {
            assertTrue(p.waitFor(DEADLINE.toSeconds(), TimeUnit.SECONDS), "qemu-nbd --fork did not return");
            assertEquals(0, p.exitValue(), "qemu-nbd exit status; log:\n" + log());
        }
        return p;
    }

    private String log() throws IOException {
        Path l = dir.resolve("qemu-nbd.log");
        return Files.exists(l) ? Files.readString(l) : "";
    }

    static boolean accepts(Path socket) {
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(socket));
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    /** Polls {@code condition} until true or the deadline; the wait between polls is on a process exit. */
    static void await(String what, java.util.function.BooleanSupplier condition, ProcessHandle watched)
            throws Exception {
        long end = System.nanoTime() + DEADLINE.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("not within " + DEADLINE + ": " + what);
            }
            try {
                watched.onExit().get(20, TimeUnit.MILLISECONDS);
            } catch (java.util.concurrent.TimeoutException e) {
                // still running: poll again
            }
        }
    }

    private Optional<ProcessHandle> serverFor(Path socket) {
        return ProcessHandle.allProcesses().filter(p -> p.info().arguments()
                .map(a -> String.join(" ", a).contains(socket.toString())).orElse(false)).findFirst();
    }

    @Test
    void virtnbdbackupOfflineBackupListShouldForkPersistAndStopOnSigterm() throws Exception {
        Path sock = dir.resolve("sda.sock");
        Path pid = Path.of(sock + ".pid");
        runQemuNbd(List.of("-r", "--format=qcow2", "-x", "sda", image.toString(), "-k", sock.toString(), "-t",
                "-e 2", "--fork", "--detect-zeroes=on", "--pid-file=" + pid, "--"), true);
        // --fork returned: the socket listens and the pid file exists now, without waiting.
        assertTrue(Files.exists(pid), "pid file after --fork returned; log:\n" + log());
        assertTrue(accepts(sock), "socket listening after --fork returned");
        long serverPid = Long.parseLong(Files.readString(pid).strip());
        ProcessHandle server = ProcessHandle.of(serverPid).orElseThrow();
        started.add(server);

        String uri = "nbd+unix:///sda?socket=" + sock;
        Path out = dir.resolve("backup.raw");
        new NbdCopy().copy(uri, out.toString(), "--connections=2", "--threads=2");
        assertArrayEquals(Files.readAllBytes(reference), Files.readAllBytes(out));
        assertFalse(new NbdInfo().map(uri).isEmpty());
        assertTrue(server.isAlive(), "-t: still serving after the last client left");
        assertEquals(8L << 20, new NbdInfo().size(uri), "-t: a later client is served");

        assertTrue(server.destroy(), "SIGTERM sent");
        server.onExit().get(DEADLINE.toSeconds(), TimeUnit.SECONDS);
        assertFalse(Files.exists(sock), "socket removed on exit");
        assertTrue(log().contains("event=listening"), "it was shear that served; log:\n" + log());
    }

    @Test
    void virtnbdbackupRestoreListShouldExitFlushedAfterTheLastClient() throws Exception {
        Path target = dir.resolve("restore.raw");
        new QemuImg().create(target, "raw", 8L << 20);
        Path sock = dir.resolve("restore.sock");
        runQemuNbd(List.of("--discard=unmap", "--format=raw", "-x", "sda", target.toString(), "-k", sock.toString(),
                "--fork"), true);
        // No probe connection here: without -t the first client to leave would end the server.
        assertTrue(Files.exists(sock), "socket bound when --fork returned; log:\n" + log());
        ProcessHandle server = serverFor(sock).orElseThrow(() -> new AssertionError("no server process"));
        started.add(server);
        new NbdCopy().copy(reference.toString(), "nbd+unix:///sda?socket=" + sock);
        server.onExit().get(DEADLINE.toSeconds(), TimeUnit.SECONDS);
        assertFalse(Files.exists(sock), "socket removed once the server left");
        assertArrayEquals(Files.readAllBytes(reference), Files.readAllBytes(target), "restored bytes on disk");
        assertTrue(log().contains("reason=\"last client left\""), "shear left by itself; log:\n" + log());
    }

    @Test
    void virtnbdbackupRestoreListIntoQcow2ShouldWriteEveryByteAndExitClean() throws Exception {
        Path target = dir.resolve("restore.qcow2");
        QemuImg qemuImg = new QemuImg();
        qemuImg.create(target, "qcow2", 8L << 20, "lazy_refcounts=on");
        Path sock = dir.resolve("restore.sock");
        runQemuNbd(List.of("--discard=unmap", "--format=qcow2", "-x", "sda", target.toString(), "-k",
                sock.toString(), "--fork"), true);
        assertTrue(Files.exists(sock), "socket bound when --fork returned; log:\n" + log());
        ProcessHandle server = serverFor(sock).orElseThrow(() -> new AssertionError("no server process"));
        started.add(server);
        new NbdCopy().copy(reference.toString(), "nbd+unix:///sda?socket=" + sock);
        server.onExit().get(DEADLINE.toSeconds(), TimeUnit.SECONDS);
        assertFalse(Files.exists(sock), "socket removed once the server left");
        assertTrue(log().contains("reason=\"last client left\""), "shear left by itself; log:\n" + log());
        QemuImg.CheckResult check = qemuImg.check(target, "qcow2");
        assertEquals(QemuImg.CHECK_CLEAN, check.exitCode(), "flushed and closed: no dirty bit, no leaks\n"
                + check.raw().stdout() + check.raw().stderr());
        assertTrue(qemuImg.compare(reference, "raw", target, "qcow2"), "restored bytes");
        byte[] header = new byte[80];
        try (var in = Files.newInputStream(target)) {
            assertEquals(80, in.readNBytes(header, 0, 80));
        }
        assertEquals(0, header[79] & 1, "incompatible feature bit 0 (dirty) cleared on exit");
    }

    @Test
    void ovirtImageioListShouldServeUntilSigtermAndExitZero() throws Exception {
        String version = Tool.named("/usr/bin/env")
                .withEnv("PATH", pathDir + File.pathSeparator + System.getenv("PATH"))
                .check("qemu-nbd", "--version").stdout().lines().findFirst().orElse("");
        String[] words = version.split("\\s+", 3);
        assertTrue(words.length >= 2 && words[0].equals("qemu-nbd") && words[1].matches("\\d+\\.\\d+\\.\\d+"),
                "ovirt-imageio parses the version: " + version);

        Path sock = dir.resolve("imageio.sock");
        String json = "json:{\"driver\": \"qcow2\", \"file\": {\"driver\": \"file\", \"filename\": \"" + image + "\"}}";
        Process p = runQemuNbd(List.of("--export-name=", "--persistent", "--shared=8", "--socket=" + sock,
                "--read-only", "--cache=none", "--aio=native", "--discard=unmap", "--detect-zeroes=unmap",
                "--allocation-depth", json), false);
        await("socket " + sock + " accepting", () -> accepts(sock), p.toHandle());
        String uri = "nbd+unix:///?socket=" + sock;
        Path out = dir.resolve("imageio.raw");
        new NbdCopy().copy(uri, out.toString());
        assertArrayEquals(Files.readAllBytes(reference), Files.readAllBytes(out));
        assertTrue(new NbdInfo().map(uri, "qemu:allocation-depth").stream().anyMatch(l -> l.contains("local")));
        assertTrue(p.isAlive(), "--persistent");
        p.destroy();   // ovirt-imageio: terminate(), expects return code 0
        assertTrue(p.waitFor(DEADLINE.toSeconds(), TimeUnit.SECONDS), "stops on SIGTERM");
        assertEquals(0, p.exitValue(), "exit status after SIGTERM; log:\n" + log());
        assertTrue(log().contains("event=listening"), "it was shear that served; log:\n" + log());
    }

    @Test
    void imageOptsSpellingShouldServeTheImage() throws Exception {
        Path sock = dir.resolve("opts.sock");
        Process p = runQemuNbd(List.of("--read-only", "--persistent", "--shared=8", "--allocation-depth",
                "--export-name=", "--socket=" + sock, "--image-opts", "driver=qcow2,file.filename=" + image), false);
        await("socket " + sock + " accepting", () -> accepts(sock), p.toHandle());
        Path out = dir.resolve("opts.raw");
        new NbdCopy().copy("nbd+unix:///?socket=" + sock, out.toString());
        assertArrayEquals(Files.readAllBytes(reference), Files.readAllBytes(out));
        p.destroy();
        assertTrue(p.waitFor(DEADLINE.toSeconds(), TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), log());
    }
}
