package dev.shear.cli;

import dev.shear.bitmap.DirtyBitmap;
import dev.shear.bitmap.PersistentBitmaps;
import dev.shear.block.BlockDevice;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import dev.shear.block.ImageFormat;
import dev.shear.block.ImageProbe;
import dev.shear.fleece.job.ManagedDisk;
import dev.shear.nbd.control.BackupService;
import dev.shear.nbd.control.ControlServer;
import dev.shear.nbd.server.BitmapExports;
import dev.shear.nbd.server.DeviceOpener;
import dev.shear.nbd.server.DirtyBitmapSource;
import dev.shear.nbd.server.Export;
import dev.shear.nbd.server.ExportRegistry;
import dev.shear.nbd.server.NbdServer;
import dev.shear.nbd.server.NbdServerConfig;
import dev.shear.nbd.server.NbdTls;
import dev.shear.nbd.server.ServerLog;
import dev.shear.nbd.server.TrackedExports;
import dev.shear.qcow2.Qcow2Image;
import io.netty.handler.ssl.SslContext;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code shear serve} and {@code shear qemu-nbd}: serve images over NBD with qemu-nbd's options
 * (design.md §Command line).
 *
 * <p>Two modes. {@code serve} is a daemon: it keeps serving after clients leave, binds 127.0.0.1
 * unless told otherwise, allows 16 clients at once, and prints one ready line (the URI) on stdout once
 * it listens. {@code qemu-nbd} (what {@code bin/qemu-nbd} runs) keeps qemu-nbd's lifecycle: one client
 * at a time unless {@code -e N}; without {@code -t} it exits, flushed, once the last client has left;
 * {@code --fork} returns once the socket listens and the pid file exists; it prints nothing on stdout.
 *
 * <p>Both: SIGINT/SIGTERM stop accepting, let in-flight requests finish, flush and close the devices,
 * exit 0. Logs: one key=value line per connection and per error on stderr.
 */
@Command(name = "serve", mixinStandardHelpOptions = true, sortOptions = false,
        description = "Serve disk images over NBD (qemu-nbd compatible options).")
public final class ServeCommand implements Callable<Integer> {
    /** qemu-nbd's default port. */
    static final int DEFAULT_PORT = 10809;
    /** The device opener (the engine's Images.open; tests may substitute their own). */
    private static volatile DeviceOpener opener = DeviceOpener.DEFAULT;

    /**
     * qemu-nbd options Shear refuses, with whether they take an argument. Each gets its own message;
     * they would otherwise be silently different (e.g. -c attaches a kernel device).
     */
    static final Map<String, Boolean> REFUSED = Map.ofEntries(
            Map.entry("-c", true), Map.entry("--connect", true),
            Map.entry("-d", false), Map.entry("--disconnect", false),
            Map.entry("-s", false), Map.entry("--snapshot", false),
            Map.entry("-n", false), Map.entry("--nocache", false),
            Map.entry("-o", true), Map.entry("--offset", true),
            Map.entry("-P", true), Map.entry("--partition", true),
            Map.entry("-L", false), Map.entry("--list", false),
            Map.entry("-T", true), Map.entry("--trace", true),
            Map.entry("-S", true), Map.entry("--selinux-label", true),
            Map.entry("-N", true), Map.entry("--handshake-limit", true),
            Map.entry("-I", true), Map.entry("--bitmap-from", true));

    private final boolean qemuNbdMode;
    /** The arguments after the subcommand name, as given (for --fork to pass on). */
    private List<String> arguments = List.of();

    @Spec
    CommandSpec spec;

    @Parameters(arity = "0..1", paramLabel = "IMAGE", description = "The image (or --image-opts options).")
    String image;

    @Option(names = {"-k", "--socket"}, paramLabel = "PATH", description = "Listen on this Unix socket.")
    Path socket;

    @Option(names = {"-p", "--port"}, paramLabel = "PORT", description = "Listen on this TCP port (default 10809).")
    Integer port;

    @Option(names = {"-b", "--bind"}, paramLabel = "ADDR", description = "TCP address (default 127.0.0.1).")
    String bind = "127.0.0.1";

    @Option(names = {"-x", "--export-name"}, paramLabel = "NAME", description = "Export name (default empty).")
    String exportName = "";

    @Option(names = {"-r", "--read-only"}, description = "Export read-only.")
    boolean readOnly;

    @Option(names = {"-f", "--format"}, paramLabel = "FMT", description = "raw or qcow2 (default: probe).")
    String format;

    @Option(names = {"-B", "--bitmap"}, paramLabel = "NAME", description = "Export a dirty bitmap (repeatable).")
    List<String> bitmaps = new ArrayList<>();

    @Option(names = {"-e", "--shared"}, paramLabel = "N", description = "Clients at once (0: no limit, as qemu-nbd).")
    Integer shared;

    @Option(names = {"-l", "--load-snapshot"}, paramLabel = "SNAPSHOT",
            description = "Serve an internal snapshot (read-only).")
    String snapshot;

    @Option(names = {"-D", "--description"}, paramLabel = "TEXT", description = "Export description.")
    String description;

    @Option(names = "--export", paramLabel = "NAME=IMAGE[,ro][,bitmap=B]", description = "Another export (repeatable).")
    List<String> extraExports = new ArrayList<>();

    @Option(names = "--control", paramLabel = "SOCKET",
            description = "Serve the control API (HTTP + JSON) on this Unix socket.")
    Path control;

    @Option(names = "--tls-creds", paramLabel = "DIR|ID", description = "x509 directory, or the id of an --object.")
    String tlsCreds;

    @Option(names = "--tls-required", arity = "0..1", paramLabel = "BOOL",
            description = "Require TLS (default with creds).")
    Boolean tlsRequired;

    @Option(names = {"-t", "--persistent"}, description = "Keep serving after the last client left.")
    boolean persistent;

    @Option(names = "--fork", description = "Return once listening; keep serving in the background.")
    boolean fork;

    @Option(names = "--pid-file", paramLabel = "PATH", description = "Write the server's pid here once listening.")
    Path pidFile;

    @Option(names = "--detect-zeroes", paramLabel = "off|on|unmap", description = "Accepted; not applied.")
    String detectZeroes;

    @Option(names = "--discard", paramLabel = "ignore|unmap", description = "Accepted; not applied.")
    String discard;

    @Option(names = "--cache", paramLabel = "MODE", description = "Accepted; not applied.")
    String cache;

    @Option(names = "--aio", paramLabel = "MODE", description = "Accepted; not applied.")
    String aio;

    @Option(names = {"-A", "--allocation-depth"}, description = "Offer qemu:allocation-depth.")
    boolean allocationDepth;

    @Option(names = "--object", paramLabel = "tls-creds-x509,id=ID,dir=DIR,...",
            description = "A TLS credentials object.")
    List<String> objects = new ArrayList<>();

    @Option(names = "--image-opts", description = "IMAGE is driver=FMT,file.filename=PATH.")
    boolean imageOpts;

    @Option(names = {"-v", "--verbose"}, description = "Debug logs.")
    boolean verbose;

    @Option(names = "--x-fork-child", hidden = true)
    boolean forkChild;

    public ServeCommand() {
        this(false);
    }

    public ServeCommand(boolean qemuNbdMode) {
        this.qemuNbdMode = qemuNbdMode;
    }

    void setArguments(List<String> args) {
        this.arguments = List.copyOf(args);
    }

    /** "-c/--connect" for "-c" or "--connect". */
    static String displayName(String option) {
        String[][] pairs = {{"-c", "--connect"}, {"-d", "--disconnect"}, {"-s", "--snapshot"}, {"-n", "--nocache"},
            {"-o", "--offset"}, {"-P", "--partition"}, {"-L", "--list"}, {"-T", "--trace"},
            {"-S", "--selinux-label"}, {"-N", "--handshake-limit"}, {"-I", "--bitmap-from"}};
        for (String[] p : pairs) {
            if (p[0].equals(option) || p[1].equals(option)) {
                return p[0] + "/" + p[1];
            }
        }
        return option;
    }

    /** Replaces the device opener (tests). */
    public static void setOpener(DeviceOpener o) {
        opener = o;
    }

    /**
     * Splits single tokens such as {@code "-e 2"} (virtnbdbackup passes them so) into option and
     * value, and refuses qemu-nbd options Shear does not implement, naming each. {@code --} ends options.
     */
    static List<String> preprocess(List<String> args) {
        List<String> out = new ArrayList<>();
        boolean options = true;
        for (String a : args) {
            if (options && a.equals("--")) {
                options = false;
                out.add(a);
                continue;
            }
            if (options && a.startsWith("-") && a.indexOf(' ') > 0 && !a.startsWith("--object")) {
                int sp = a.indexOf(' ');
                out.add(a.substring(0, sp));
                out.add(a.substring(sp + 1).trim());
                continue;
            }
            out.add(a);
        }
        return out;
    }

    /** The first refused option among the arguments, or null. */
    static String refusedOption(List<String> args) {
        for (String a : args) {
            if (a.equals("--")) {
                return null;
            }
            String name = a.startsWith("--") && a.contains("=") ? a.substring(0, a.indexOf('=')) : a;
            if (REFUSED.containsKey(name)) {
                return name;
            }
            if (a.length() > 2 && a.charAt(0) == '-' && a.charAt(1) != '-' && REFUSED.containsKey(a.substring(0, 2))
                    && REFUSED.get(a.substring(0, 2))) {
                return a.substring(0, 2);
            }
        }
        return null;
    }

    @Override
    public Integer call() throws Exception {
        if (verbose) {
            System.setProperty("shear.debug", "true");
        }
        validate();
        Map<String, Path> tlsObjects = parseObjects();
        List<Export> exports = new ArrayList<>();
        NbdServer server = null;
        try {
            openExports(exports);
            NbdServerConfig config = listenConfig();
            SslContext ssl = tlsContext(tlsObjects);
            if (ssl != null) {
                config = config.withTls(ssl, tlsRequired == null || tlsRequired);
            }
            if (fork && !forkChild) {
                closeAll(exports);
                exports.clear();
                return forkAndWait();
            }
            Map<String, ManagedDisk> managed = new LinkedHashMap<>();
            if (control != null) {
                // qcow2 exports served writable get their persistent checkpoint chain (a damaged
                // sidecar refuses the start, naming file and line); the others in-memory checkpoints.
                for (int i = 0; i < exports.size(); i++) {
                    exports.set(i, BackupService.manage(exports.get(i), List.of(), managed));
                }
            }
            ExportRegistry registry = new ExportRegistry(exports);
            server = new NbdServer(config, registry);
            exports.clear();   // the registry owns the devices now
            server.start();
            server.warmUp();
            if (control != null) {
                BackupService service = new BackupService(registry, control.toAbsolutePath().getParent(),
                        config.unixSocket() == null ? null : config.unixSocket().toString());
                service.addDisks(managed);
                controlServer = new ControlServer(control, service).start();
            }
            actualPort = socket == null ? server.port() : 0;
            if (pidFile != null) {
                Files.writeString(pidFile, ProcessHandle.current().pid() + "\n");
            }
            NbdServer running = server;
            installSignalHandlers(running);
            if (qemuNbdMode && !persistent) {
                running.onIdle(() -> stopAsync(running, "last client left"));
            }
            if (!qemuNbdMode || forkChild) {
                PrintWriter out = spec.commandLine().getOut();
                out.println(uri(config));
                out.flush();
            }
            running.awaitTermination();
            if (pidFile != null) {
                Files.deleteIfExists(pidFile);
            }
            return ShearMain.EXIT_OK;
        } catch (IOException | RuntimeException e) {
            closeAll(exports);
            if (server != null) {
                server.shutdown();
            }
            throw e;
        }
    }

    private void validate() {
        if (port != null && socket != null) {
            throw usage("options -k/--socket and -p/--port: both given (expected: one of them)");
        }
        if (port != null && (port < 0 || port > 65535)) {
            throw usage("port: " + port + " (expected: 0..65535)");
        }
        if (shared != null && shared < 0) {
            throw usage("shared: " + shared + " (expected: >= 0; 0 for no limit)");
        }
        if (image == null && extraExports.isEmpty()) {
            throw usage("IMAGE: missing (expected: an image or --export NAME=IMAGE)");
        }
        checkValue("--detect-zeroes", detectZeroes, Set.of("off", "on", "unmap"));
        checkValue("--discard", discard, Set.of("ignore", "off", "unmap", "on"));
        checkValue("--cache", cache, Set.of("none", "writeback", "writethrough", "directsync", "unsafe"));
        checkValue("--aio", aio, Set.of("threads", "native", "io_uring"));
        if (detectZeroes != null || discard != null || cache != null || aio != null) {
            ServerLog.info("options-ignored", "detect-zeroes", detectZeroes, "discard", discard, "cache", cache,
                    "aio", aio, "reason", "accepted for qemu-nbd compatibility; no effect");
        }
    }

    private void checkValue(String option, String value, Set<String> allowed) {
        if (value != null && !allowed.contains(value)) {
            throw usage(option + ": " + value + " (expected: one of " + String.join(", ", allowed) + ")");
        }
    }

    private CommandLine.ParameterException usage(String message) {
        return new CommandLine.ParameterException(spec.commandLine(), message);
    }

    private void openExports(List<Export> exports) throws IOException {
        int clients = clientLimit();
        if (image != null) {
            Path path;
            ImageFormat fmt = format == null ? null : parseFormat(format);
            if (imageOpts) {
                Map<String, String> opts = keyValues(image, "--image-opts");
                path = null;
                for (Map.Entry<String, String> e : opts.entrySet()) {
                    switch (e.getKey()) {
                        case "driver" -> fmt = parseFormat(e.getValue());
                        case "file.filename", "filename" -> path = Path.of(e.getValue());
                        case "file.driver" -> {
                            if (!e.getValue().equals("file")) {
                                throw usage("--image-opts file.driver: " + e.getValue() + " (expected: file)");
                            }
                        }
                        default -> throw usage("--image-opts " + e.getKey() + ": unknown option (expected: driver, "
                                + "file.filename, file.driver)");
                    }
                }
                if (path == null) {
                    throw usage("--image-opts: file.filename missing");
                }
            } else if (image.startsWith("json:")) {
                ImageSpec js;
                try {
                    js = ImageSpec.parseJson(image);
                } catch (IllegalArgumentException e) {
                    throw usage(e.getMessage());
                }
                path = js.path();
                fmt = js.format() != null ? parseFormat(js.format()) : fmt;
            } else {
                path = Path.of(image);
            }
            exports.add(open(exportName, path, fmt, readOnly || snapshot != null, snapshot, description, clients,
                    bitmaps));
        }
        for (String spec : extraExports) {
            int eq = spec.indexOf('=');
            if (eq < 0) {
                throw usage("--export " + spec + " (expected: NAME=IMAGE[,ro][,bitmap=B])");
            }
            String name = spec.substring(0, eq);
            String[] parts = spec.substring(eq + 1).split(",");
            boolean ro = readOnly;
            List<String> exportBitmaps = new ArrayList<>();
            for (int i = 1; i < parts.length; i++) {
                if (parts[i].equals("ro")) {
                    ro = true;
                } else if (parts[i].startsWith("bitmap=") && parts[i].length() > "bitmap=".length()) {
                    exportBitmaps.add(parts[i].substring("bitmap=".length()));
                } else {
                    throw usage("--export " + name + " option " + parts[i] + " (expected: ro or bitmap=NAME)");
                }
            }
            exports.add(open(name, Path.of(parts[0]), format == null ? null : parseFormat(format), ro, null, null,
                    clients, exportBitmaps));
        }
    }

    private Export open(String name, Path path, ImageFormat fmt, boolean ro, String snap, String desc, int clients,
            List<String> bitmapNames) throws IOException {
        if (!Files.isRegularFile(path) && !Files.exists(path)) {
            throw new IOException("image: " + path + " (expected: an existing file)");
        }
        ImageFormat actual = fmt;
        if (actual == null) {
            try (ImageFile f = ImageFile.open(path, false)) {
                actual = ImageProbe.probe(f);
            }
        }
        // qcow2 and raw alike: writable unless -r / ,ro; a snapshot (-l) is opened read-only by the
        // caller. The device's capabilities decide the transmission flags (Export#transmissionFlags).
        // Writable qcow2 exports get the dirty tracker, so every enabled bitmap records their writes.
        boolean readOnlyOpen = ro || snap != null;
        BlockDevice device = TrackedExports.stack(opener.open(path, actual, readOnlyOpen, snap), readOnlyOpen);
        DirtyBitmapSource exported;
        try {
            exported = exportedBitmaps(device, bitmapNames);
        } catch (IOException | RuntimeException e) {
            device.close();
            throw e;
        }
        ServerLog.info("export", "name", name, "image", path, "format", actual.qemuName(), "size", device.size(),
                "read-only", readOnlyOpen, "bitmaps", String.join(",", exported.bitmapNames()));
        return new Export(name, desc, device, readOnlyOpen, allocationDepth, exported, clients > 1);
    }

    /**
     * The persistent bitmaps named by -B / bitmap=, in the order given (duplicates once). A missing,
     * inconsistent (in_use) or unsupported bitmap refuses the export with one line naming it, as
     * qemu-nbd refuses ("Bitmap 'b' is inconsistent and cannot be used", "Bitmap 'b' is not found").
     */
    private static DirtyBitmapSource exportedBitmaps(BlockDevice device, List<String> names) throws IOException {
        if (names.isEmpty()) {
            return DirtyBitmapSource.NONE;
        }
        dev.shear.bitmap.BitmapManager tracked = dev.shear.bitmap.BitmapManager.of(device);
        if (tracked != null) {   // a writable qcow2 export (TrackedExports): its live bitmaps
            List<DirtyBitmap> live = new ArrayList<>();
            for (String n : new LinkedHashSet<>(names)) {
                live.add(tracked.require(n));
            }
            return BitmapExports.of(live);
        }
        if (!(device instanceof Qcow2Image image)) {
            throw BlockException.invalid(device.name(), -1, "bitmap '%s': not found (expected: a qcow2 image; "
                    + "raw images have no bitmaps)", names.get(0));
        }
        if (image.openedSnapshot() != null) {
            throw BlockException.invalid(device.name(), -1, "bitmap '%s': not exported with -l (expected: "
                    + "bitmaps of the active image only)", names.get(0));
        }
        PersistentBitmaps loaded = PersistentBitmaps.load(image);
        if (loaded.warning() != null) {
            ServerLog.warn("bitmaps-inconsistent", "image", device.name(), "message", loaded.warning());
        }
        List<DirtyBitmap> out = new ArrayList<>();
        for (String n : new LinkedHashSet<>(names)) {
            out.add(loaded.require(n));
        }
        return BitmapExports.of(out);
    }

    private ImageFormat parseFormat(String f) {
        try {
            return ImageFormat.parse(f);
        } catch (IllegalArgumentException e) {
            throw usage(e.getMessage());
        }
    }

    /**
     * Clients at once: -e N, where qemu-nbd (since 5.2) reads 0 as "no limit" (virt-v2v, server-matrix.sh
     * pass "-e 0"); default 1 in qemu-nbd mode, 16 for serve.
     */
    int clientLimit() {
        if (shared == null) {
            return qemuNbdMode ? 1 : 16;
        }
        return shared == 0 ? Integer.MAX_VALUE : shared;
    }

    private NbdServerConfig listenConfig() {
        int clients = clientLimit();
        NbdServerConfig c = socket != null ? NbdServerConfig.unix(socket.toAbsolutePath())
                : NbdServerConfig.tcp(new InetSocketAddress(bind, port != null ? port : DEFAULT_PORT));
        return c.withMaxConnections(clients);
    }

    /** --object tls-creds-x509,id=ID,dir=DIR,endpoint=server,verify-peer=on|off: id -> (dir, verify). */
    private Map<String, Path> parseObjects() {
        Map<String, Path> dirs = new LinkedHashMap<>();
        for (String o : objects) {
            Map<String, String> kv = keyValues(o, "--object");
            String type = kv.remove("qom-type");
            if (!"tls-creds-x509".equals(type)) {
                throw usage("--object " + type + " (expected: tls-creds-x509)");
            }
            String id = kv.remove("id");
            String dir = kv.remove("dir");
            String endpoint = kv.getOrDefault("endpoint", "server");
            kv.remove("endpoint");
            String verify = kv.remove("verify-peer");
            if (id == null || dir == null) {
                throw usage("--object tls-creds-x509: id and dir are required");
            }
            if (!endpoint.equals("server")) {
                throw usage("--object " + id + " endpoint: " + endpoint + " (expected: server)");
            }
            if (!kv.isEmpty()) {
                throw usage("--object " + id + " " + kv.keySet().iterator().next() + ": unknown property");
            }
            dirs.put(id, Path.of(dir));
            // QEMU's default is verify-peer=on for servers.
            verifyPeer.put(id, verify == null || Set.of("on", "yes", "true").contains(verify));
        }
        return dirs;
    }

    private final Map<String, Boolean> verifyPeer = new HashMap<>();

    private SslContext tlsContext(Map<String, Path> tlsObjects) throws IOException {
        if (tlsCreds == null) {
            if (Boolean.TRUE.equals(tlsRequired)) {
                throw usage("--tls-required: no --tls-creds given");
            }
            return null;
        }
        if (tlsObjects.containsKey(tlsCreds)) {
            return NbdTls.serverContext(tlsObjects.get(tlsCreds), verifyPeer.get(tlsCreds));
        }
        Path dir = Path.of(tlsCreds);
        if (!Files.isDirectory(dir)) {
            throw usage("--tls-creds " + tlsCreds + " (expected: an --object id or a directory)");
        }
        return NbdTls.serverContext(dir, false);
    }

    /** Parses "a=b,c=d" (a first bare word becomes qom-type, as QEMU's --object does). */
    private Map<String, String> keyValues(String s, String option) {
        Map<String, String> m = new LinkedHashMap<>();
        String[] parts = s.split(",");
        for (int i = 0; i < parts.length; i++) {
            int eq = parts[i].indexOf('=');
            if (eq < 0) {
                if (i == 0 && option.equals("--object")) {
                    m.put("qom-type", parts[i]);
                    continue;
                }
                throw usage(option + " " + parts[i] + " (expected: KEY=VALUE)");
            }
            m.put(parts[i].substring(0, eq), parts[i].substring(eq + 1));
        }
        return m;
    }

    /** The ready line: the URI of the first export. */
    private String uri(NbdServerConfig config) {
        String name = image != null ? exportName : extraExports.get(0).substring(0, extraExports.get(0).indexOf('='));
        String tls = config.ssl() != null ? "s" : "";
        if (config.unixSocket() != null) {
            return "nbd" + tls + "+unix:///" + name + "?socket=" + config.unixSocket();
        }
        String host = config.tcp().getHostString();
        if (host.contains(":")) {
            host = "[" + host + "]";
        }
        return "nbd" + tls + "://" + host + ":" + actualPort + "/" + name;
    }

    /** The bound TCP port (0 for Unix sockets), known once listening. */
    private int actualPort;

    /** --fork: start this same command as a child JVM and return once it prints its ready line. */
    private int forkAndWait() throws IOException, InterruptedException {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>();
        cmd.add(java);
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(ShearMain.class.getName());
        List<String> original = arguments;
        cmd.add(qemuNbdMode ? "qemu-nbd" : "serve");
        cmd.add("--x-fork-child");
        for (String a : original) {
            if (!a.equals("--fork")) {
                cmd.add(a);
            }
        }
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT)
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        Process child = pb.start();
        try (BufferedReader r = new BufferedReader(
                new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))) {
            String line = r.readLine();
            if (line == null) {
                int code = child.waitFor();
                throw new IOException("--fork: the server exited with code " + code + " before listening");
            }
            if (!qemuNbdMode) {
                spec.commandLine().getOut().println(line);
                spec.commandLine().getOut().flush();
            }
        }
        return ShearMain.EXIT_OK;
    }

    private void installSignalHandlers(NbdServer server) {
        for (String name : new String[] {"INT", "TERM"}) {
            try {
                sun.misc.Signal.handle(new sun.misc.Signal(name), s -> stopAsync(server, "SIG" + name));
            } catch (IllegalArgumentException e) {
                ServerLog.warn("signal", "name", name, "message", e.getMessage());
            }
        }
        if (forkChild) {
            // The parent reads our first stdout line, then goes away: HUP must not stop us.
            try {
                sun.misc.Signal.handle(new sun.misc.Signal("HUP"), sun.misc.SignalHandler.SIG_IGN);
            } catch (IllegalArgumentException e) {
                ServerLog.warn("signal", "name", "HUP", "message", e.getMessage());
            }
        }
    }

    /** The control API server, or null; set once before the signal handlers are installed. */
    private static volatile ControlServer controlServer;

    private static void stopAsync(NbdServer server, String reason) {
        Thread t = new Thread(() -> {
            ServerLog.info("stopping", "reason", reason);
            ControlServer cs = controlServer;
            if (cs != null) {
                // New control requests get 503 from here on. Backups end first: their snapshots and
                // scratch files go before the devices close (which stores the bitmaps, in_use cleared).
                cs.beginShutdown();
                cs.service().endAll();
                try {
                    cs.close();
                } catch (IOException e) {
                    ServerLog.warn("control-close-failed", "message", e.getMessage());
                }
            }
            try {
                server.shutdown();
            } catch (IOException e) {
                ServerLog.error("shutdown-failed", "message", e.getMessage());
            }
        }, "shear-shutdown");
        t.start();
    }

    private static void closeAll(List<Export> exports) {
        for (Export e : exports) {
            try {
                e.device().close();
            } catch (IOException ex) {
                ServerLog.warn("close-failed", "image", e.device().name(), "message", ex.getMessage());
            }
        }
    }
}
