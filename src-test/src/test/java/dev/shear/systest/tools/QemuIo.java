package dev.shear.systest.tools;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Typed wrapper of {@code qemu-io}: runs a list of {@code -c} commands on one image opened with an
 * explicit format. qemu-io stops at the first failing command and exits 1; that becomes a
 * {@link ToolException} naming the commands. The static helpers build the commands this module uses.
 */
public final class QemuIo {
    private final Tool tool;

    public QemuIo() {
        this(Tool.named("qemu-io"));
    }

    public QemuIo(Tool tool) {
        this.tool = tool;
    }

    /** Runs {@code commands} in order on {@code image} (read-write); requires all to succeed. */
    public ToolResult run(Path image, String format, List<String> commands) {
        if (commands.isEmpty()) {
            return new ToolResult(0, "", "");
        }
        List<String> a = new ArrayList<>(List.of("-f", format));
        for (String c : commands) {
            a.add("-c");
            a.add(c);
        }
        a.add(image.toString());
        ToolResult r = tool.check(a);
        String all = r.stdout() + r.stderr();
        if (all.contains(" failed:")) {     // belt and braces: the exit status is 1 too
            throw new ToolException(tool.commandLine(a), r, "qemu-io reported a failure");
        }
        return r;
    }

    /** {@code write -q -P PATTERN OFF LEN}: LEN bytes of the byte PATTERN (0..255). */
    public static String write(int pattern, long offset, long length) {
        return String.format(Locale.ROOT, "write -q -P 0x%02x %d %d", pattern & 0xff, offset, length);
    }

    /** {@code write -q -s FILE OFF LEN}: LEN bytes from the start of FILE (random data, incompressible). */
    public static String writeFrom(Path source, long offset, long length) {
        return "write -q -s " + source + " " + offset + " " + length;
    }

    /**
     * {@code write -q -z [-u] OFF LEN}: zeroes. Without unmap an allocated qcow2 cluster stays allocated
     * (ZERO_ALLOC); with unmap it is freed (ZERO_PLAIN); an unallocated one becomes ZERO_PLAIN.
     */
    public static String writeZeroes(long offset, long length, boolean unmap) {
        return "write -q -z " + (unmap ? "-u " : "") + offset + " " + length;
    }

    /** {@code discard -q OFF LEN}. */
    public static String discard(long offset, long length) {
        return "discard -q " + offset + " " + length;
    }
}
