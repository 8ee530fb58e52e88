package dev.shear.systest.tools;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.cli.ShearMain;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.Arrays;

/**
 * Runs the {@code shear} command line in-process ({@link ShearMain#newCommandLine()}), capturing
 * stdout and stderr: fast, and a failure shows the engine's stack in the test JVM when
 * {@code -Dshear.debug=true}.
 */
public final class ShearCli {
    private ShearCli() {
    }

    /** Runs {@code shear ARGS…}; never throws for a non-zero exit status. */
    public static ToolResult run(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        int exit;
        try (PrintWriter o = new PrintWriter(out, true); PrintWriter e = new PrintWriter(err, true)) {
            exit = ShearMain.newCommandLine().setOut(o).setErr(e).execute(args);
        }
        return new ToolResult(exit, out.toString(), err.toString());
    }

    /** Runs {@code shear ARGS…}, requires one of {@code allowedExits}, and returns stdout as JSON. */
    public static JsonNode json(int[] allowedExits, String... args) {
        ToolResult r = run(args);
        boolean ok = Arrays.stream(allowedExits).anyMatch(x -> x == r.exitCode());
        if (!ok) {
            throw new ToolException(command(args), r,
                    "unexpected exit status (expected: " + Arrays.toString(allowedExits) + ")");
        }
        return Json.parse(r.stdout(), String.join(" ", command(args)));
    }

    /** Runs {@code shear ARGS…}, requires exit status 0, and returns stdout as JSON. */
    public static JsonNode json(String... args) {
        return json(new int[] {0}, args);
    }

    static java.util.List<String> command(String... args) {
        java.util.List<String> c = new java.util.ArrayList<>();
        c.add("shear");
        c.addAll(Arrays.asList(args));
        return c;
    }
}
