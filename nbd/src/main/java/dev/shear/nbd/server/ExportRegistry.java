package dev.shear.nbd.server;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The exports of a server, by exact name (nbd-protocol.md §2.6, §2.8). Immutable once built. */
public final class ExportRegistry {
    private final Map<String, Export> exports;

    public ExportRegistry(Collection<Export> exports) {
        Map<String, Export> m = new LinkedHashMap<>();
        for (Export e : exports) {
            if (m.putIfAbsent(e.name(), e) != null) {
                throw new IllegalArgumentException("export name: " + e.name() + " (expected: unique)");
            }
        }
        this.exports = m;
    }

    /** The export named exactly {@code name}, or null. */
    public Export find(String name) {
        return exports.get(name);
    }

    public Collection<Export> all() {
        return exports.values();
    }

    /** Flushes and closes every device; the first failure is thrown after all were tried. */
    public void flushAndClose() throws IOException {
        List<IOException> failures = new ArrayList<>();
        for (Export e : exports.values()) {
            try {
                try {
                    e.device().flush();
                } finally {
                    e.device().close();
                }
            } catch (IOException ex) {
                failures.add(ex);
            }
        }
        if (!failures.isEmpty()) {
            IOException first = failures.get(0);
            for (int i = 1; i < failures.size(); i++) {
                first.addSuppressed(failures.get(i));
            }
            throw first;
        }
    }
}
