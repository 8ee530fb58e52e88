package dev.shear.systest.tools;

import java.util.ArrayList;
import java.util.List;

/** Typed wrapper of {@code nbdcopy} (libnbd): copies between NBD URIs and local files. */
public final class NbdCopy {
    private final Tool tool;

    public NbdCopy() {
        this(Tool.named("nbdcopy"));
    }

    public NbdCopy(Tool tool) {
        this.tool = tool;
    }

    /** {@code nbdcopy [EXTRA…] SOURCE DESTINATION}; each is a URI, a file or {@code -}. */
    public ToolResult copy(String source, String destination, String... extraArgs) {
        List<String> a = new ArrayList<>(List.of(extraArgs));
        a.add(source);
        a.add(destination);
        return tool.check(a);
    }
}
