package dev.shear.systest.tools;

import java.time.Duration;
import java.util.List;

/** A command ran past its deadline and was killed (with all its descendants). */
public final class ToolTimeoutException extends ToolException {
    private static final long serialVersionUID = 1L;

    private final long pid;

    public ToolTimeoutException(List<String> command, ToolResult partial, Duration timeout, long pid) {
        super(command, partial, "timed out after " + timeout.toMillis() + " ms and was killed (pid " + pid + ")");
        this.pid = pid;
    }

    /** The process id of the killed command (tests check that it is gone). */
    public long pid() {
        return pid;
    }
}
