package dev.shear.systest.tools;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * A long-running child process (a server) whose stdout lines are queued and whose stderr is kept for
 * failure messages. {@link #close()} kills it and its descendants; nothing outlives the test.
 */
final class BackgroundProcess implements AutoCloseable {
    /** Marks the end of stdout in the line queue. */
    private static final String EOF = new String("<eof>");

    private final List<String> command;
    private final Process process;
    private final LinkedBlockingQueue<String> stdoutLines = new LinkedBlockingQueue<>();
    private final StringBuffer stderr = new StringBuffer();    // appended by the drain thread

    private BackgroundProcess(List<String> command, Process process) {
        this.command = List.copyOf(command);
        this.process = process;
    }

    static BackgroundProcess start(List<String> command) {
        ProcessBuilder pb = new ProcessBuilder(command)
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        pb.environment().put("LC_ALL", "C");
        Process p;
        try {
            p = pb.start();
        } catch (IOException e) {
            throw new ToolException(command, "cannot start", e);
        }
        BackgroundProcess bp = new BackgroundProcess(command, p);
        bp.drainThread("stdout", () -> {
            try (BufferedReader r = new BufferedReader(
                    new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line; (line = r.readLine()) != null; ) {
                    bp.stdoutLines.add(line);
                }
            } finally {
                bp.stdoutLines.add(EOF);
            }
        });
        bp.drainThread("stderr", () -> {
            try (BufferedReader r = new BufferedReader(
                    new InputStreamReader(p.getErrorStream(), StandardCharsets.UTF_8))) {
                for (String line; (line = r.readLine()) != null; ) {
                    bp.stderr.append(line).append('\n');
                }
            }
        });
        return bp;
    }

    private interface IoRunnable {
        void run() throws IOException;
    }

    private void drainThread(String name, IoRunnable body) {
        Thread t = new Thread(() -> {
            try {
                body.run();
            } catch (IOException e) {
                // the process was killed while we read: nothing more to collect
            }
        }, name + " of " + command.get(0));
        t.setDaemon(true);
        t.start();
    }

    List<String> command() {
        return command;
    }

    Process process() {
        return process;
    }

    String stderr() {
        return stderr.toString();
    }

    boolean isAlive() {
        return process.isAlive();
    }

    /**
     * The next stdout line, waiting at most {@code timeout}; throws {@link ToolException} (with stderr)
     * if the process ends or the deadline passes first.
     */
    String awaitLine(Duration timeout, String what) {
        long deadline = System.nanoTime() + timeout.toNanos();
        try {
            String line = stdoutLines.poll(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            if (line == null) {
                throw failure("no " + what + " within " + timeout.toMillis() + " ms");
            }
            if (line == EOF) {
                waitExit(Duration.ofSeconds(2));
                throw failure("exited before printing " + what);
            }
            return line;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw failure("interrupted while waiting for " + what);
        }
    }

    /**
     * Waits up to {@code slice} for the process to exit: the poll interval of readiness loops, which
     * also notices a server that died. Returns true if it has exited.
     */
    boolean waitExit(Duration slice) {
        try {
            return process.waitFor(slice.toNanos(), TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return !process.isAlive();
        }
    }

    /** A ToolException naming the command, with the exit status if it has one and stderr so far. */
    ToolException failure(String what) {
        int exit = process.isAlive() ? -1 : process.exitValue();
        if (process.isAlive()) {
            Tool.kill(process);
        }
        return new ToolException(command, new ToolResult(exit, "", stderr()), what);
    }

    @Override
    public void close() {
        if (process.isAlive()) {
            Tool.kill(process);
        }
    }
}
