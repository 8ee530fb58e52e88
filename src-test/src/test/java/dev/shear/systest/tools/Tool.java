package dev.shear.systest.tools;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Runs one external program with a deadline and captures what it writes.
 *
 * <p>Every run: stdin is /dev/null, stdout and stderr are drained on their own threads (so a chatty
 * tool cannot block on a full pipe), {@code LC_ALL=C} keeps messages stable. When the deadline
 * passes the process and all its descendants are killed and {@link ToolTimeoutException} is thrown;
 * it never waits on a sleep. Instances are immutable; the {@code with…} methods return copies.
 */
public final class Tool {
    /** Long enough for any tool on the small images of this module; a hang still fails fast. */
    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(30);

    /** How long to wait for the output pipes to close after the process has exited or was killed. */
    private static final Duration DRAIN_GRACE = Duration.ofSeconds(5);

    private static final File DEV_NULL = new File("/dev/null");

    private final String program;
    private final Duration timeout;
    private final Path workDir;                 // null: inherit
    private final Map<String, String> env;      // added to the inherited environment

    private Tool(String program, Duration timeout, Path workDir, Map<String, String> env) {
        this.program = program;
        this.timeout = timeout;
        this.workDir = workDir;
        this.env = env;
    }

    /** A tool by name (looked up on PATH when run) or by absolute path. */
    public static Tool named(String program) {
        Map<String, String> env = new LinkedHashMap<>();
        env.put("LC_ALL", "C");
        return new Tool(program, DEFAULT_TIMEOUT, null, Map.copyOf(env));
    }

    public Tool withTimeout(Duration newTimeout) {
        return new Tool(program, newTimeout, workDir, env);
    }

    public Tool withWorkDir(Path dir) {
        return new Tool(program, timeout, dir, env);
    }

    public Tool withEnv(String name, String value) {
        Map<String, String> e = new LinkedHashMap<>(env);
        e.put(name, value);
        return new Tool(program, timeout, workDir, Map.copyOf(e));
    }

    public String program() {
        return program;
    }

    public Duration timeout() {
        return timeout;
    }

    /** The full command line for {@code args}. */
    public List<String> commandLine(List<String> args) {
        List<String> cmd = new ArrayList<>(args.size() + 1);
        cmd.add(program);
        cmd.addAll(args);
        return cmd;
    }

    /** Runs and requires exit status 0. */
    public ToolResult check(String... args) {
        return check(Arrays.asList(args));
    }

    /** Runs and requires exit status 0. */
    public ToolResult check(List<String> args) {
        return expect(args, 0);
    }

    /** Runs and requires one of the {@code allowed} exit statuses; throws naming the command otherwise. */
    public ToolResult expect(List<String> args, int... allowed) {
        ToolResult r = run(args);
        for (int a : allowed) {
            if (r.exitCode() == a) {
                return r;
            }
        }
        throw new ToolException(commandLine(args), r,
                "unexpected exit status (expected: " + Arrays.toString(allowed) + ")");
    }

    /** Runs and returns whatever the exit status; throws only if it cannot start or times out. */
    public ToolResult run(String... args) {
        return run(Arrays.asList(args));
    }

    /** Runs and returns whatever the exit status; throws only if it cannot start or times out. */
    public ToolResult run(List<String> args) {
        List<String> cmd = commandLine(args);
        ProcessBuilder pb = new ProcessBuilder(cmd)
                .redirectInput(ProcessBuilder.Redirect.from(DEV_NULL));
        if (workDir != null) {
            pb.directory(workDir.toFile());
        }
        pb.environment().putAll(env);
        Process p;
        try {
            p = pb.start();
        } catch (IOException e) {
            throw new ToolException(cmd, "cannot start", e);
        }
        CompletableFuture<byte[]> out = drain(p.getInputStream(), cmd, "stdout");
        CompletableFuture<byte[]> err = drain(p.getErrorStream(), cmd, "stderr");
        boolean exited;
        try {
            exited = p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            kill(p);
            Thread.currentThread().interrupt();
            throw new ToolException(cmd, "interrupted", e);
        }
        if (!exited) {
            kill(p);
            ToolResult partial = new ToolResult(-1, text(out), text(err));
            throw new ToolTimeoutException(cmd, partial, timeout, p.pid());
        }
        return new ToolResult(p.exitValue(), text(out), text(err));
    }

    /** Kills the process and every descendant (enumerated first: they are re-parented once it dies). */
    static void kill(Process p) {
        List<ProcessHandle> children = p.descendants().toList();
        p.destroyForcibly();
        children.forEach(ProcessHandle::destroyForcibly);
        try {
            p.waitFor(DRAIN_GRACE.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static CompletableFuture<byte[]> drain(InputStream in, List<String> cmd, String name) {
        CompletableFuture<byte[]> f = new CompletableFuture<>();
        Thread t = new Thread(() -> {
            try (in) {
                f.complete(in.readAllBytes());
            } catch (IOException e) {
                f.completeExceptionally(e);
            }
        }, name + " of " + cmd.get(0));
        t.setDaemon(true);
        t.start();
        return f;
    }

    private static String text(CompletableFuture<byte[]> f) {
        try {
            return new String(f.get(DRAIN_GRACE.toMillis(), TimeUnit.MILLISECONDS), StandardCharsets.UTF_8);
        } catch (TimeoutException | ExecutionException e) {
            return "<output unavailable: " + e + ">";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "<interrupted>";
        }
    }
}
