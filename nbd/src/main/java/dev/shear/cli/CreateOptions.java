package dev.shear.cli;

import java.util.LinkedHashMap;
import java.util.Map;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;

/** The {@code -o key=value[,key=value...]} create options shared by {@code create} and {@code convert}. */
final class CreateOptions {
    private CreateOptions() {
    }

    /** Parses repeated {@code -o} groups in order; a later key overrides an earlier one. */
    static Map<String, String> parse(CommandSpec spec, String[] raw) {
        Map<String, String> out = new LinkedHashMap<>();
        if (raw == null) {
            return out;
        }
        for (String group : raw) {
            for (String kv : group.split(",")) {
                if (kv.isEmpty()) {
                    continue;
                }
                int eq = kv.indexOf('=');
                if (eq <= 0) {
                    throw new CommandLine.ParameterException(spec.commandLine(), "-o: " + kv
                            + " (expected: key=value)");
                }
                out.put(kv.substring(0, eq), kv.substring(eq + 1));
            }
        }
        return out;
    }
}
