package dev.shear.systest.tools;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * The real {@code shear} launched from the fat jar ({@code java -jar ${shear.jar} …}), for tests that
 * need a separate process (clients that connect over a socket, kills, crashes). {@link #serve} waits
 * for the one ready line that {@code shear serve} prints on stdout once listening (the export URI),
 * with a deadline; stderr is kept for failure messages; {@link #close()} kills the JVM.
 */
public final class ShearProcess implements AutoCloseable {
    public static final String JAR_PROPERTY = "shear.jar";
    public static final Duration START_TIMEOUT = Duration.ofSeconds(30);

    private final BackgroundProcess process;
    private final String readyLine;

    private ShearProcess(BackgroundProcess process, String readyLine) {
        this.process = process;
        this.readyLine = readyLine;
    }

    /** The fat jar named by {@code -Dshear.jar}; throws with a build hint if it is not there. */
    public static Path jar() {
        String p = System.getProperty(JAR_PROPERTY);
        if (p == null || !Files.isRegularFile(Path.of(p))) {
            throw new IllegalStateException("shear.jar: " + p + " (expected: the fat jar; build it with "
                    + "'mvn -o -q -pl nbd -am package -DskipTests')");
        }
        return Path.of(p);
    }

    /** True when the fat jar exists (tests that need it can assume this). */
    public static boolean jarAvailable() {
        String p = System.getProperty(JAR_PROPERTY);
        return p != null && Files.isRegularFile(Path.of(p));
    }

    /** {@code shear serve -k SOCKET -x NAME [EXTRA…] IMAGE}; returns once the ready line is printed. */
    public static ShearProcess serve(Path socket, String exportName, Path image, String... extraArgs) {
        List<String> args = new ArrayList<>(List.of("serve", "-k", socket.toString(), "-x", exportName));
        args.addAll(List.of(extraArgs));
        args.add(image.toString());
        return start(args);
    }

    /** Starts {@code java -jar shear.jar ARGS…} and waits for its first stdout line. */
    public static ShearProcess start(List<String> args) {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("-Xmx256m");
        cmd.add("-jar");
        cmd.add(jar().toString());
        cmd.addAll(args);
        BackgroundProcess p = BackgroundProcess.start(cmd);
        try {
            String line = p.awaitLine(START_TIMEOUT, "ready line");
            return new ShearProcess(p, line.strip());
        } catch (RuntimeException e) {
            p.close();
            throw e;
        }
    }

    /** The ready line: for {@code serve}, the export's NBD URI. */
    public String uri() {
        return readyLine;
    }

    /** Further stdout lines, waiting at most {@code timeout} for the next. */
    public String nextLine(Duration timeout) {
        return process.awaitLine(timeout, "next line");
    }

    /** What the server wrote on stderr so far (put it in assertion messages). */
    public String stderr() {
        return process.stderr();
    }

    public boolean isAlive() {
        return process.isAlive();
    }

    /** Sends SIGTERM (a graceful stop: in-flight requests are answered, devices flushed). */
    public void terminate() {
        process.process().destroy();
    }

    /** Waits up to {@code timeout} for the JVM to exit and returns its exit status; throws if it does not. */
    public int awaitExit(Duration timeout) {
        if (!process.waitExit(timeout)) {
            throw process.failure("still running " + timeout.toMillis() + " ms after it was asked to stop");
        }
        return process.process().exitValue();
    }

    public long pid() {
        return process.process().pid();
    }

    @Override
    public void close() {
        process.close();
    }
}
