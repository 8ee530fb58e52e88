package dev.shear.nbd.server;

import java.io.PrintStream;
import java.time.Instant;

/**
 * One line per event on stderr, key=value (style.md §1 Logging):
 * {@code 2025-01-01T00:00:00Z shear level=info event=connect conn=3 remote=...}.
 * Values with spaces are quoted. A test may redirect or silence the sink.
 */
public final class ServerLog {
    /** Guards nothing: a volatile reference swapped by tests only. */
    private static volatile PrintStream sink = System.err;
    private static volatile boolean debug = Boolean.getBoolean("shear.debug");

    private ServerLog() {
    }

    public static void setSink(PrintStream out) {
        sink = out;
    }

    public static void info(String event, Object... keyValues) {
        log("info", event, keyValues);
    }

    public static void warn(String event, Object... keyValues) {
        log("warn", event, keyValues);
    }

    public static void error(String event, Object... keyValues) {
        log("error", event, keyValues);
    }

    public static void debug(String event, Object... keyValues) {
        if (debug) {
            log("debug", event, keyValues);
        }
    }

    private static void log(String level, String event, Object... kv) {
        PrintStream out = sink;
        if (out == null) {
            return;
        }
        StringBuilder b = new StringBuilder(96);
        b.append(Instant.now()).append(" shear level=").append(level).append(" event=").append(event);
        for (int i = 0; i + 1 < kv.length; i += 2) {
            b.append(' ').append(kv[i]).append('=');
            String v = String.valueOf(kv[i + 1]);
            if (v.isEmpty() || v.indexOf(' ') >= 0 || v.indexOf('"') >= 0) {
                b.append('"').append(v.replace("\\", "\\\\").replace("\"", "\\\"").replace('\n', ' ')).append('"');
            } else {
                b.append(v);
            }
        }
        out.println(b);
    }
}
