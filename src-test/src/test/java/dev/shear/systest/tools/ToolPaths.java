package dev.shear.systest.tools;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Finds tools: executables on PATH, and a python3 that has libnbd's bindings.
 *
 * <p>The python probe runs in the temp directory on purpose: run from the repository root,
 * {@code import nbd} would succeed by importing the {@code nbd/} module directory as a namespace
 * package, so the probe also asks for {@code nbd.NBD}. With pyenv the {@code python3} on PATH often
 * lacks the Debian {@code python3-libnbd} package, so {@code /usr/bin/python3} is tried too.
 */
public final class ToolPaths {
    private static final Map<String, Optional<Path>> CACHE = new ConcurrentHashMap<>();
    private static final String PYTHON_KEY = "\0python3-libnbd";
    private static final Duration PROBE_TIMEOUT = Duration.ofSeconds(15);

    private ToolPaths() {
    }

    /** True when {@code tool} (a PATH name or {@link ToolRequirement#PYTHON_LIBNBD}) is usable here. */
    public static boolean isAvailable(String tool) {
        if (ToolRequirement.PYTHON_LIBNBD.equals(tool)) {
            return python3WithLibnbd().isPresent();
        }
        return onPath(tool).isPresent();
    }

    /** The first executable named {@code name} on PATH (or {@code name} itself when absolute). */
    public static Optional<Path> onPath(String name) {
        return CACHE.computeIfAbsent(name, ToolPaths::lookUp);
    }

    /** A python3 interpreter that can {@code import nbd} (python3-libnbd). */
    public static Optional<Path> python3WithLibnbd() {
        return CACHE.computeIfAbsent(PYTHON_KEY, k -> probePython());
    }

    private static Optional<Path> lookUp(String name) {
        if (name.contains(File.separator)) {
            Path p = Path.of(name);
            return Files.isRegularFile(p) && Files.isExecutable(p) ? Optional.of(p) : Optional.empty();
        }
        String path = System.getenv("PATH");
        if (path == null) {
            return Optional.empty();
        }
        for (String dir : path.split(File.pathSeparator)) {
            if (dir.isEmpty()) {
                continue;
            }
            Path p = Path.of(dir, name);
            if (Files.isRegularFile(p) && Files.isExecutable(p)) {
                return Optional.of(p);
            }
        }
        return Optional.empty();
    }

    private static Optional<Path> probePython() {
        LinkedHashSet<Path> candidates = new LinkedHashSet<>();
        lookUp("python3").ifPresent(candidates::add);
        Path system = Path.of("/usr/bin/python3");
        if (Files.isExecutable(system)) {
            candidates.add(system);
        }
        List<Path> tried = new ArrayList<>(candidates);
        Path tmp = Path.of(System.getProperty("java.io.tmpdir"));
        for (Path python : tried) {
            try {
                ToolResult r = Tool.named(python.toString()).withWorkDir(tmp).withTimeout(PROBE_TIMEOUT)
                        .run("-c", "import nbd; nbd.NBD");
                if (r.ok()) {
                    return Optional.of(python);
                }
            } catch (ToolException e) {
                // not this one; try the next candidate
            }
        }
        return Optional.empty();
    }
}
