package dev.shear.systest.tools;

import java.util.List;

/**
 * An external command failed: it could not start, exited with an unexpected status, or ran past its
 * deadline. The message always carries the command line and the command's stderr, so a failing test
 * says what was run and what the tool answered (go-qcow2reader {@code test/qemuimg}).
 */
public class ToolException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private static final int MAX_STDERR = 4000;

    private final List<String> command;
    private final ToolResult result;

    public ToolException(List<String> command, ToolResult result, String what) {
        super(what + ": " + String.join(" ", command) + describe(result));
        this.command = List.copyOf(command);
        this.result = result;
    }

    public ToolException(List<String> command, String what, Throwable cause) {
        super(what + ": " + String.join(" ", command) + ": " + cause, cause);
        this.command = List.copyOf(command);
        this.result = null;
    }

    /** The command line that failed. */
    public List<String> command() {
        return command;
    }

    /** What the command produced, or null when it could not start. */
    public ToolResult result() {
        return result;
    }

    private static String describe(ToolResult r) {
        if (r == null) {
            return "";
        }
        String err = r.stderr().strip();
        if (err.length() > MAX_STDERR) {
            err = err.substring(0, MAX_STDERR) + "…";
        }
        StringBuilder sb = new StringBuilder();
        sb.append(" (exit status: ").append(r.exitCode()).append(')');
        sb.append("\nstderr: ").append(err.isEmpty() ? "<empty>" : err);
        if (err.isEmpty() && !r.stdout().isBlank()) {
            String out = r.stdout().strip();
            sb.append("\nstdout: ").append(out.length() > MAX_STDERR ? out.substring(0, MAX_STDERR) + "…" : out);
        }
        return sb.toString();
    }
}
