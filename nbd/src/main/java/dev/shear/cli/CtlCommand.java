package dev.shear.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Stack;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.IParameterPreprocessor;
import picocli.CommandLine.Model.ArgSpec;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code shear ctl}: the control API from the command line (design.md §Control API). Every call prints
 * the server's JSON, or a table with {@code --human}; a push backup begun on a terminal shows a
 * progress bar until it ends. Exit 0 on 2xx, 1 otherwise (the error JSON is printed on stderr).
 *
 * <pre>
 * exports | export-add NAME IMAGE [--format F] [--read-only] | export-remove NAME
 * bitmaps EXPORT | bitmap-add EXPORT NAME [--granularity N] | bitmap-remove EXPORT NAME
 * bitmap-clear|bitmap-enable|bitmap-disable EXPORT NAME | bitmap-merge EXPORT NAME SOURCE...
 * bitmap-flush EXPORT                      store the image's bitmaps and checkpoint sidecar now
 * checkpoints EXPORT | checkpoint-add EXPORT NAME | checkpoint-remove EXPORT NAME
 * checkpoint-redefine [--created NAME=INSTANT]... [--description NAME=TEXT]... EXPORT [NAME...]
 *                      the whole chain, oldest first, each the parent of the next; none clears it
 * backup-begin EXPORT [--since C] [--checkpoint C] [--scratch KIND] [--scratch-path P]
 *              [--push TARGET [--backing FILE] [--compress[=zstd|deflate]]] [--wait]
 * backup-end ID | jobs | job ID | events | metrics | request METHOD PATH [JSON]
 * </pre>
 */
@Command(name = "ctl", mixinStandardHelpOptions = true, sortOptions = false,
        description = "Talk to a running server's control API (shear serve --control SOCKET).")
public final class CtlCommand implements Callable<Integer> {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--control", required = true, paramLabel = "SOCKET", description = "The control socket.")
    Path control;

    @Option(names = "--human", description = "Print tables instead of JSON.")
    boolean human;

    @Option(names = "--since", paramLabel = "CHECKPOINT", description = "backup-begin: incremental since.")
    String since;

    @Option(names = "--checkpoint", paramLabel = "NAME", description = "backup-begin: checkpoint to create.")
    String checkpoint;

    @Option(names = "--scratch", paramLabel = "KIND", description = "qcow2, spill-lz4, spill-zstd, spill-none.")
    String scratch;

    @Option(names = "--scratch-path", paramLabel = "FILE", description = "backup-begin: scratch file to create.")
    String scratchPath;

    @Option(names = "--push", paramLabel = "TARGET", description = "backup-begin: push to this new qcow2 file.")
    String push;

    @Option(names = "--backing", paramLabel = "FILE", description = "backup-begin --push: backing file of the target.")
    String backing;

    @Option(names = "--compress", arity = "0..1", paramLabel = "TYPE", preprocessor = CompressValue.class,
            description = "backup-begin --push: compressed clusters; --compress=zstd or --compress=deflate, alone: "
                    + "the target's default type (deflate).")
    String compress;

    @Option(names = "--wait", description = "backup-begin --push: wait for the end (bar on a terminal).")
    boolean await;

    @Option(names = "--format", paramLabel = "FMT", description = "export-add: raw or qcow2.")
    String format;

    @Option(names = "--read-only", description = "export-add: read-only.")
    boolean readOnly;

    @Option(names = "--granularity", paramLabel = "BYTES", description = "bitmap-add: granularity.")
    Long granularity;

    @Option(names = "--created", paramLabel = "NAME=INSTANT",
            description = "checkpoint-redefine: creation time of NAME (ISO-8601; default now).")
    List<String> created = new ArrayList<>();

    @Option(names = "--description", paramLabel = "NAME=TEXT",
            description = "checkpoint-redefine: description of NAME.")
    List<String> descriptions = new ArrayList<>();

    @Parameters(index = "0", paramLabel = "COMMAND", description = "See the class documentation / --help.")
    String command;

    @Parameters(index = "1..*", paramLabel = "ARG")
    List<String> args = new ArrayList<>();

    /**
     * {@code --compress} takes its value only when attached ({@code --compress=zstd}): a bare
     * {@code --compress} means "true", and the next argument stays a positional one (picocli's documented
     * pattern for an optional value that must not swallow the EXPORT).
     */
    static final class CompressValue implements IParameterPreprocessor {
        @Override
        public boolean preprocess(Stack<String> rest, CommandSpec command, ArgSpec arg, Map<String, Object> info) {
            if (" ".equals(info.get("separator"))) {
                rest.push("true");
            }
            return false;
        }
    }

    /** An HTTP reply. */
    record Reply(int status, String body) {
        boolean ok() {
            return status / 100 == 2;
        }
    }

    @Override
    public Integer call() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        if (command.equals("events")) {
            return events(out);
        }
        String[] req = request();
        Reply r = send(control, req[0], req[1], req[2]);
        if (!r.ok()) {
            err.print(r.body());
            err.flush();
            return ShearMain.EXIT_ERROR;
        }
        if (command.equals("metrics")) {
            out.print(r.body());
        } else if (command.equals("backup-begin") && push != null && await) {
            print(out, r.body());
            String id = JSON.readTree(r.body()).get("id").asText();
            return waitFor(out, id);
        } else {
            print(out, r.body());
        }
        out.flush();
        return ShearMain.EXIT_OK;
    }

    private String arg(int i, String name) {
        if (args.size() <= i) {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(), command + ": " + name
                    + " missing");
        }
        return args.get(i);
    }

    /** {method, path, body or null}. */
    private String[] request() throws IOException {
        ObjectNode b = JSON.createObjectNode();
        return switch (command) {
            case "exports" -> new String[] {"GET", "/exports", null};
            case "export-add" -> {
                b.put("name", arg(0, "NAME")).put("image", arg(1, "IMAGE"));
                if (format != null) {
                    b.put("format", format);
                }
                if (readOnly) {
                    b.put("readOnly", true);
                }
                yield new String[] {"POST", "/exports", b.toString()};
            }
            case "export-remove" -> new String[] {"DELETE", "/exports/" + arg(0, "NAME"), null};
            case "bitmaps" -> new String[] {"GET", "/exports/" + arg(0, "EXPORT") + "/bitmaps", null};
            case "bitmap-add" -> {
                b.put("name", arg(1, "NAME"));
                if (granularity != null) {
                    b.put("granularity", granularity);
                }
                yield new String[] {"POST", "/exports/" + arg(0, "EXPORT") + "/bitmaps", b.toString()};
            }
            case "bitmap-remove" -> new String[] {"DELETE", "/exports/" + arg(0, "EXPORT") + "/bitmaps/"
                + arg(1, "NAME"), null};
            case "bitmap-clear", "bitmap-enable", "bitmap-disable" -> new String[] {"POST", "/exports/"
                + arg(0, "EXPORT") + "/bitmaps/" + arg(1, "NAME") + "/" + command.substring(7), "{}"};
            case "bitmap-merge" -> {
                ArrayNode s = b.putArray("sources");
                for (String a : args.subList(2, args.size())) {
                    s.add(a);
                }
                yield new String[] {"POST", "/exports/" + arg(0, "EXPORT") + "/bitmaps/" + arg(1, "NAME") + "/merge",
                    b.toString()};
            }
            case "checkpoints" -> new String[] {"GET", "/exports/" + arg(0, "EXPORT") + "/checkpoints", null};
            case "checkpoint-add" -> {
                b.put("name", arg(1, "NAME"));
                yield new String[] {"POST", "/exports/" + arg(0, "EXPORT") + "/checkpoints", b.toString()};
            }
            case "checkpoint-remove" -> new String[] {"DELETE", "/exports/" + arg(0, "EXPORT") + "/checkpoints/"
                + arg(1, "NAME"), null};
            case "checkpoint-redefine" -> new String[] {"PUT", "/exports/" + arg(0, "EXPORT") + "/checkpoints",
                redefineBody(b)};
            case "bitmap-flush" -> new String[] {"POST", "/exports/" + arg(0, "EXPORT") + "/bitmaps/flush", "{}"};
            case "backup-begin" -> {
                b.put("export", arg(0, "EXPORT")).put("type", push != null ? "push" : "pull");
                putIf(b, "since", since);
                putIf(b, "checkpoint", checkpoint);
                putIf(b, "scratch", scratch);
                putIf(b, "scratchPath", scratchPath);
                if (push != null) {
                    b.put("target", Path.of(push).toAbsolutePath().toString());
                    putIf(b, "backing", backing);
                }
                // Sent as given, with or without --push: the server judges it (400 naming the field).
                if ("true".equals(compress)) {
                    b.put("compress", true);
                } else {
                    putIf(b, "compress", compress);
                }
                yield new String[] {"POST", "/backups", b.toString()};
            }
            case "backup-end" -> new String[] {"DELETE", "/backups/" + arg(0, "ID"), null};
            case "jobs" -> new String[] {"GET", "/jobs", null};
            case "job" -> new String[] {"GET", "/jobs/" + arg(0, "ID"), null};
            case "metrics" -> new String[] {"GET", "/metrics", null};
            case "request" -> new String[] {arg(0, "METHOD").toUpperCase(java.util.Locale.ROOT), arg(1, "PATH"),
                args.size() > 2 ? args.get(2) : null};
            default -> throw new picocli.CommandLine.ParameterException(spec.commandLine(), "command: " + command
                    + " (expected: exports, export-add, export-remove, bitmaps, bitmap-add, bitmap-remove, "
                    + "bitmap-clear, bitmap-enable, bitmap-disable, bitmap-merge, bitmap-flush, checkpoints, "
                    + "checkpoint-add, checkpoint-remove, checkpoint-redefine, backup-begin, backup-end, jobs, job, "
                    + "events, metrics, request)");
        };
    }

    /**
     * checkpoint-redefine: {@code {"checkpoints": [{name, created?, description?}, ...]}} from the NAMEs
     * after EXPORT, oldest first; the server makes each the parent of the next.
     */
    private String redefineBody(ObjectNode b) {
        List<String> names = args.subList(Math.min(1, args.size()), args.size());
        String bad = NameValues.firstUnknown(names, List.of(created, descriptions));
        if (bad != null) {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(), "checkpoint-redefine: option "
                    + "value '" + bad + "' (expected: NAME=VALUE for one of the NAMEs given: " + names + ")");
        }
        ArrayNode list = b.putArray("checkpoints");
        for (String n : names) {
            ObjectNode c = list.addObject().put("name", n);
            putIf(c, "created", NameValues.valueOf(created, n));
            putIf(c, "description", NameValues.valueOf(descriptions, n));
        }
        return b.toString();
    }

    private static void putIf(ObjectNode b, String k, String v) {
        if (v != null) {
            b.put(k, v);
        }
    }

    /** Polls the job, drawing a bar on a terminal, until it is final; exit 0 only when completed. */
    private int waitFor(PrintWriter out, String id) throws IOException, InterruptedException {
        boolean tty = System.console() != null;
        while (true) {
            Reply r = send(control, "GET", "/jobs/" + id, null);
            JsonNode j = JSON.readTree(r.body());
            String state = j.path("state").asText();
            JsonNode p = j.path("progress");
            if (tty) {
                double f = p.path("totalBytes").asLong() == 0 ? 1
                        : (double) p.path("doneBytes").asLong() / p.path("totalBytes").asLong();
                int w = 40;
                int n = (int) Math.round(f * w);
                System.out.printf("\r[%s%s] %5.1f%% %8.1f MiB/s eta %ss ", "#".repeat(n), " ".repeat(w - n), f * 100,
                        p.path("bytesPerSecond").asDouble() / (1 << 20), p.path("etaSeconds").asText());
                System.out.flush();
            }
            if (!state.equals("running")) {
                if (tty) {
                    System.out.println();
                }
                print(out, r.body());
                out.flush();
                return state.equals("completed") ? ShearMain.EXIT_OK : ShearMain.EXIT_ERROR;
            }
            Thread.sleep(200);
        }
    }

    private void print(PrintWriter out, String body) throws IOException {
        if (!human) {
            out.print(body.endsWith("\n") ? body : body + "\n");
            return;
        }
        JsonNode n = JSON.readTree(body);
        List<JsonNode> rows = new ArrayList<>();
        if (n.isArray()) {
            n.forEach(rows::add);
        } else {
            rows.add(n);
        }
        if (rows.isEmpty()) {
            out.println("(none)");
            return;
        }
        List<String> cols = new ArrayList<>();
        for (JsonNode r : rows) {
            for (Iterator<String> it = r.fieldNames(); it.hasNext();) {
                String c = it.next();
                if (!cols.contains(c)) {
                    cols.add(c);
                }
            }
        }
        List<List<String>> cells = new ArrayList<>();
        int[] width = new int[cols.size()];
        for (int i = 0; i < cols.size(); i++) {
            width[i] = cols.get(i).length();
        }
        for (JsonNode r : rows) {
            List<String> line = new ArrayList<>();
            for (int i = 0; i < cols.size(); i++) {
                JsonNode v = r.get(cols.get(i));
                String s = v == null || v.isNull() ? "-" : v.isValueNode() ? v.asText() : cell(v);
                line.add(s);
                width[i] = Math.max(width[i], s.length());
            }
            cells.add(line);
        }
        StringBuilder h = new StringBuilder();
        for (int i = 0; i < cols.size(); i++) {
            h.append(String.format("%-" + (width[i] + 2) + "s", cols.get(i).toUpperCase(java.util.Locale.ROOT)));
        }
        out.println(h.toString().stripTrailing());
        for (List<String> line : cells) {
            StringBuilder l = new StringBuilder();
            for (int i = 0; i < cols.size(); i++) {
                l.append(String.format("%-" + (width[i] + 2) + "s", line.get(i)));
            }
            out.println(l.toString().stripTrailing());
        }
    }

    private static String cell(JsonNode v) {
        if (v.has("doneBytes")) {
            long d = v.get("doneBytes").asLong();
            long t = v.get("totalBytes").asLong();
            return d + "/" + t;
        }
        List<String> parts = new ArrayList<>();
        if (v.isArray()) {
            v.forEach(x -> parts.add(x.asText()));
            return String.join(",", parts);
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = v.fields(); it.hasNext();) {
            Map.Entry<String, JsonNode> e = it.next();
            parts.add(e.getKey() + "=" + e.getValue().asText());
        }
        return String.join(",", parts);
    }

    /** GET /events: prints each line as it arrives until the server closes. */
    private int events(PrintWriter out) throws IOException {
        try (SocketChannel ch = open(control)) {
            writeRequest(ch, "GET", "/events", null);
            InputStream in = Channels.newInputStream(ch);
            String status = readLine(in);
            if (status == null || !status.contains(" 200")) {
                return ShearMain.EXIT_ERROR;
            }
            while (!readLine(in).isEmpty()) {
                // headers
            }
            while (true) {
                String size = readLine(in);
                if (size == null) {
                    return ShearMain.EXIT_OK;
                }
                int n = Integer.parseInt(size.trim(), 16);
                if (n == 0) {
                    return ShearMain.EXIT_OK;
                }
                byte[] data = in.readNBytes(n);
                readLine(in);
                out.print(new String(data, StandardCharsets.UTF_8));
                out.flush();
            }
        }
    }

    private static SocketChannel open(Path socket) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            ch.connect(UnixDomainSocketAddress.of(socket));
        } catch (IOException e) {
            ch.close();
            throw new IOException("control socket " + socket + ": " + e.getMessage(), e);
        }
        return ch;
    }

    private static void writeRequest(SocketChannel ch, String method, String path, String body) throws IOException {
        byte[] b = body == null ? new byte[0] : body.getBytes(StandardCharsets.UTF_8);
        String head = method + " " + path + " HTTP/1.1\r\nHost: shear\r\nConnection: close\r\n"
                + (body == null ? "" : "Content-Type: application/json\r\n")
                + "Content-Length: " + b.length + "\r\n\r\n";
        ByteBuffer out = ByteBuffer.allocate(head.length() + b.length);
        out.put(head.getBytes(StandardCharsets.US_ASCII)).put(b).flip();
        while (out.hasRemaining()) {
            ch.write(out);
        }
    }

    /** One request, Connection: close; the whole reply. */
    static Reply send(Path socket, String method, String path, String body) throws IOException {
        try (SocketChannel ch = open(socket)) {
            writeRequest(ch, method, path, body);
            InputStream in = Channels.newInputStream(ch);
            String status = readLine(in);
            if (status == null) {
                throw new IOException("control socket " + socket + ": no reply");
            }
            int code = Integer.parseInt(status.split(" ")[1]);
            int length = -1;
            for (String h = readLine(in); h != null && !h.isEmpty(); h = readLine(in)) {
                if (h.toLowerCase(java.util.Locale.ROOT).startsWith("content-length:")) {
                    length = Integer.parseInt(h.substring(15).trim());
                }
            }
            byte[] data = length >= 0 ? in.readNBytes(length) : in.readAllBytes();
            return new Reply(code, new String(data, StandardCharsets.UTF_8));
        }
    }

    private static String readLine(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        int c;
        while ((c = in.read()) >= 0) {
            if (c == '\n') {
                String s = b.toString(StandardCharsets.ISO_8859_1);
                return s.endsWith("\r") ? s.substring(0, s.length() - 1) : s;
            }
            b.write(c);
        }
        return b.size() == 0 ? null : b.toString(StandardCharsets.ISO_8859_1);
    }
}
