package dev.shear.systest.tools;

/**
 * What an external command (or an in-process {@code shear} run) left behind: its exit code and
 * everything it wrote, decoded as UTF-8.
 */
public record ToolResult(int exitCode, String stdout, String stderr) {

    /** True when the command exited with status 0. */
    public boolean ok() {
        return exitCode == 0;
    }
}
