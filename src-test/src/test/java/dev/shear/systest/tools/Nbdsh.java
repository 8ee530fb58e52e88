package dev.shear.systest.tools;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Runs python3 snippets with libnbd's bindings, the programmable client ({@code nbdsh} without the
 * shell). The interpreter is the one {@link ToolPaths#python3WithLibnbd()} found; it runs in the temp
 * directory so that no {@code nbd/} directory shadows the module. Require it with
 * {@code @RequiresTools("python3-libnbd")}.
 */
public final class Nbdsh {
    private static final String CONNECT = String.join("\n",
            "import sys",
            "import nbd",
            "h = nbd.NBD()",
            "h.connect_uri(sys.argv[1])",
            "");

    private final Tool python;

    public Nbdsh() {
        Path py = ToolPaths.python3WithLibnbd().orElseThrow(
                () -> new IllegalStateException("no python3 can 'import nbd' (install python3-libnbd)"));
        this.python = Tool.named(py.toString()).withWorkDir(Path.of(System.getProperty("java.io.tmpdir")));
    }

    public Nbdsh(Tool python) {
        this.python = python;
    }

    /**
     * Connects {@code h} to {@code uri} and runs {@code snippet} (which may use {@code h}, {@code nbd},
     * {@code sys}); returns what it printed. {@code h.shutdown()} is called after the snippet.
     */
    public String run(String uri, String snippet) {
        String script = CONNECT + snippet + "\nh.shutdown()\n";
        return python.check("-c", script, uri).stdout();
    }

    /** Runs a whole script (nothing pre-imported except what it imports) with {@code argv}; returns stdout. */
    public ToolResult script(String script, String... argv) {
        List<String> a = new ArrayList<>(List.of("-c", script));
        a.addAll(List.of(argv));
        return python.check(a);
    }
}
