package dev.shear.nbd.server;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The exports of a server, by exact name (nbd-protocol.md §2.6, §2.8). Exports may be added and removed
 * while the server runs (the control API: backup snapshot exports); a removed export's connected
 * clients keep their {@link Export} until they disconnect, new clients no longer find it.
 */
public final class ExportRegistry {
    /** Guarded by this. */
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
    public synchronized Export find(String name) {
        return exports.get(name);
    }

    /** A copy of the exports, in the order they were added. */
    public synchronized Collection<Export> all() {
        return new ArrayList<>(exports.values());
    }

    /** Adds {@code e}; false (nothing changes) when the name is taken. */
    public synchronized boolean add(Export e) {
        return exports.putIfAbsent(e.name(), e) == null;
    }

    /** Removes the export named {@code name}; returns it, or null. The device is not closed. */
    public synchronized Export remove(String name) {
        return exports.remove(name);
    }

    /** Flushes and closes every device; the first failure is thrown after all were tried. */
    public void flushAndClose() throws IOException {
        List<IOException> failures = new ArrayList<>();
        for (Export e : all()) {
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
