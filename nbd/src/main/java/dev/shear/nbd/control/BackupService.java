package dev.shear.nbd.control;

import dev.shear.bitmap.BitmapManager;
import dev.shear.bitmap.DirtyBitmap;
import dev.shear.block.BlockDevice;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFormat;
import dev.shear.fleece.CbwPolicy;
import dev.shear.fleece.SnapshotStats;
import dev.shear.fleece.job.BackupBusyException;
import dev.shear.fleece.job.BackupJob;
import dev.shear.fleece.job.JobEvent;
import dev.shear.fleece.job.JobProgress;
import dev.shear.fleece.job.ManagedDisk;
import dev.shear.fleece.job.PersistentCheckpoints;
import dev.shear.fleece.job.PullBackupJob;
import dev.shear.fleece.job.PushBackupJob;
import dev.shear.fleece.job.ScratchSpec;
import dev.shear.nbd.server.BitmapExports;
import dev.shear.nbd.server.DirtyBitmapSource;
import dev.shear.nbd.server.Export;
import dev.shear.nbd.server.ExportRegistry;
import dev.shear.nbd.server.NbdMetrics;
import dev.shear.nbd.server.ServerLog;
import dev.shear.nbd.server.TrackedExports;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.compress.CompressionType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Consumer;

/**
 * What the control API operates on: the server's {@link ExportRegistry}, the live disks that backups
 * can run on ({@link ManagedDisk}, one per writable export), and the backup jobs. Transport-free: the
 * HTTP layer ({@link ControlServer}) maps calls and {@link ControlException}s to requests and replies.
 * Thread-safe.
 *
 * <p>Two kinds of disk (design.md §Checkpoints and incremental backup). A qcow2 image served writable
 * ({@link TrackedExports}) keeps its bitmaps and checkpoints in the image and its sidecar
 * ({@link PersistentCheckpoints} over the image's {@link BitmapManager}); they survive a restart. Any
 * other writable export (raw) gets in-memory bitmaps and checkpoints, gone when the server stops. The
 * bitmap and checkpoint calls are {@link DiskBitmaps}'.
 */
public final class BackupService {
    /** Bitmap granularity of checkpoints and bitmaps added without one (QEMU's default for 64 KiB clusters). */
    public static final long DEFAULT_GRANULARITY = 64 * 1024;

    private final ExportRegistry registry;
    private final Map<String, ManagedDisk> disks = new ConcurrentHashMap<>();
    /** Job id → job, every job since start (final ones stay for status). */
    private final Map<String, BackupJob> jobs = new ConcurrentHashMap<>();
    private final List<Consumer<JobEvent>> eventListeners = new CopyOnWriteArrayList<>();
    private final Path tempDir;
    private final AtomicLong nextJob = new AtomicLong(1);
    private final String nbdSocket;
    final LongAdder controlRequests = new LongAdder();
    final LongAdder controlErrors = new LongAdder();

    /**
     * @param tempDir   where temporary scratch files go
     * @param nbdSocket the NBD server's Unix socket (for URIs), or null
     */
    public BackupService(ExportRegistry registry, Path tempDir, String nbdSocket) {
        this.registry = registry;
        this.tempDir = tempDir;
        this.nbdSocket = nbdSocket;
    }

    /**
     * Wraps a writable export's device for backups (copy-before-write over dirty tracking) and returns
     * the export to serve instead. A device built by {@link TrackedExports} (a writable qcow2 image:
     * it has a {@link BitmapManager}) gets the image's persistent checkpoint chain, read from its
     * sidecar now; any other gets in-memory checkpoints. Read-only exports are returned unchanged:
     * nothing writes them, a backup of them needs no snapshot.
     *
     * @param bitmaps in-memory bitmaps to record the export's writes into
     * @throws BlockException INVALID_FORMAT when the image's checkpoint sidecar is damaged, naming the
     *         file and line (the device is left open: the caller owns it)
     */
    public static Export manage(Export e, List<DirtyBitmap> bitmaps, Map<String, ManagedDisk> into)
            throws IOException {
        if (!e.writable()) {
            return e;
        }
        ManagedDisk d = ManagedDisk.wrap(e.name(), e.device(), bitmaps, DEFAULT_GRANULARITY);
        BitmapManager tracked = BitmapManager.of(e.device());
        if (tracked != null) {
            // 0: new checkpoint bitmaps get qemu-img's default granularity, as `shear checkpoint create`.
            d = d.withCheckpoints(PersistentCheckpoints.open(tracked, 0));
        }
        into.put(e.name(), d);
        return new Export(e.name(), e.description(), d.top(), e.readOnly(), e.allocationDepth(), e.bitmaps(),
                e.multiConn());
    }

    /** Registers disks wrapped by {@link #manage}. */
    public void addDisks(Map<String, ManagedDisk> managed) {
        disks.putAll(managed);
    }

    public ExportRegistry registry() {
        return registry;
    }

    public void addEventListener(Consumer<JobEvent> l) {
        eventListeners.add(l);
    }

    public void removeEventListener(Consumer<JobEvent> l) {
        eventListeners.remove(l);
    }

    // ---- exports

    public List<Map<String, Object>> listExports() {
        List<Map<String, Object>> out = new ArrayList<>();
        for (Export e : registry.all()) {
            out.add(describe(e));
        }
        return out;
    }

    public Map<String, Object> getExport(String name) {
        return describe(export(name));
    }

    private Map<String, Object> describe(Export e) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", e.name());
        m.put("size", e.device().size());
        m.put("writable", e.writable());
        m.put("bitmaps", e.bitmaps().bitmapNames());
        ManagedDisk d = disks.get(e.name());
        m.put("backups", d != null);
        m.put("persistent", d != null && d.checkpoints().persistent());
        BackupJob owner = d == null ? null : d.owner();
        m.put("backup", owner == null ? null : owner.id());
        if (nbdSocket != null) {
            m.put("uri", "nbd+unix:///" + e.name() + "?socket=" + nbdSocket);
        }
        return m;
    }

    private Export export(String name) {
        Export e = registry.find(name);
        if (e == null) {
            throw ControlException.notFound("export '" + name + "': not found");
        }
        return e;
    }

    private ManagedDisk disk(String name) {
        export(name);
        ManagedDisk d = disks.get(name);
        if (d == null) {
            throw ControlException.conflict("export '" + name + "': read-only or a backup snapshot (expected: a "
                    + "writable export)", "export");
        }
        return d;
    }

    public Map<String, Object> addExport(ControlRequests.AddExport r) throws IOException {
        require(r.name(), "name");
        require(r.image(), "image");
        if (registry.find(r.name()) != null) {
            throw ControlException.conflict("export '" + r.name() + "': exists", "name");
        }
        Path image = Path.of(r.image());
        if (!Files.exists(image)) {
            throw ControlException.badRequest("image: " + image + " (expected: an existing file)", "image");
        }
        ImageFormat fmt;
        try {
            fmt = r.format() == null ? null : ImageFormat.parse(r.format());
        } catch (IllegalArgumentException e) {
            throw ControlException.badRequest(e.getMessage(), "format");
        }
        boolean ro = Boolean.TRUE.equals(r.readOnly());
        BlockDevice dev = TrackedExports.stack(Images.open(image, fmt, ro, null), ro);
        Export e = new Export(r.name(), null, dev, ro, false, DirtyBitmapSource.NONE, true);
        Map<String, ManagedDisk> m = new LinkedHashMap<>();
        try {
            e = manage(e, List.of(), m);
        } catch (IOException | RuntimeException ex) {
            dev.close();
            if (ex instanceof BlockException b && b.kind() == BlockErrorKind.INVALID_FORMAT) {
                throw ControlException.conflict(b.getMessage(), "image");
            }
            throw ex;
        }
        if (!registry.add(e)) {
            dev.close();
            throw ControlException.conflict("export '" + r.name() + "': exists", "name");
        }
        disks.putAll(m);
        ServerLog.info("export-added", "name", r.name(), "image", image);
        return describe(e);
    }

    public void removeExport(String name) throws IOException {
        Export e = export(name);
        ManagedDisk d = disks.get(name);
        if (d != null && d.owner() != null) {
            throw ControlException.conflict("export '" + name + "': backup " + d.owner().id() + " running (expected: "
                    + "end it first)", "name");
        }
        if (isSnapshotExport(name)) {
            throw ControlException.conflict("export '" + name + "': a backup snapshot (expected: end the backup)",
                    "name");
        }
        registry.remove(name);
        disks.remove(name);
        try {
            e.device().flush();
        } finally {
            e.device().close();
        }
        ServerLog.info("export-removed", "name", name);
    }

    private boolean isSnapshotExport(String name) {
        for (BackupJob j : jobs.values()) {
            if (j instanceof PullBackupJob p && !p.state().isFinal() && p.snapshotExport().equals(name)) {
                return true;
            }
        }
        return false;
    }

    // ---- bitmaps and checkpoints (DiskBitmaps)

    public List<Map<String, Object>> listBitmaps(String export) {
        return DiskBitmaps.listBitmaps(disk(export));
    }

    public Map<String, Object> addBitmap(String export, ControlRequests.AddBitmap r) throws IOException {
        return DiskBitmaps.addBitmap(disk(export), r);
    }

    public void removeBitmap(String export, String name) throws IOException {
        DiskBitmaps.removeBitmap(disk(export), name);
    }

    /** clear, enable, disable, merge. */
    public Map<String, Object> bitmapAction(String export, String name, String action,
            ControlRequests.MergeBitmaps merge) throws IOException {
        return DiskBitmaps.bitmapAction(disk(export), name, action, merge);
    }

    /** {@code POST /exports/E/bitmaps/flush}; see {@link DiskBitmaps#flushBitmaps}. */
    public Map<String, Object> flushBitmaps(String export) throws IOException {
        return DiskBitmaps.flushBitmaps(disk(export));
    }

    public List<Map<String, Object>> listCheckpoints(String export) {
        return DiskBitmaps.listCheckpoints(disk(export));
    }

    public Map<String, Object> addCheckpoint(String export, ControlRequests.AddCheckpoint r) throws IOException {
        return DiskBitmaps.addCheckpoint(disk(export), r);
    }

    public void removeCheckpoint(String export, String name) throws IOException {
        DiskBitmaps.removeCheckpoint(disk(export), name);
    }

    /** {@code PUT /exports/E/checkpoints}; see {@link DiskBitmaps#redefineCheckpoints}. */
    public List<Map<String, Object>> redefineCheckpoints(String export, ControlRequests.RedefineCheckpoints r)
            throws IOException {
        return DiskBitmaps.redefineCheckpoints(disk(export), r);
    }

    // ---- backups

    /** Begins a pull backup of {@code export} since {@code since}, creating {@code checkpoint} (the demo). */
    public Map<String, Object> beginPull(String export, String since, String checkpoint) throws IOException {
        return beginBackup(new ControlRequests.BeginBackup(export, "pull", since, checkpoint, null, null, null, null,
                null, null, null));
    }

    Map<String, Object> beginBackup(ControlRequests.BeginBackup r) throws IOException {
        require(r.export(), "export");
        String type = r.type() == null ? "pull" : r.type();
        if (!type.equals("pull") && !type.equals("push")) {
            throw ControlException.badRequest("type: " + type + " (expected: pull or push)", "type");
        }
        ManagedDisk d = disk(r.export());
        if (d.owner() != null) {
            throw ControlException.conflict("backup: export '" + r.export() + "' is busy with job " + d.owner().id()
                    + " (expected: one backup at a time)", "export");
        }
        if (r.since() != null && d.checkpoints().find(r.since()) == null && !DiskBitmaps.hasBitmap(d, r.since())) {
            throw ControlException.badRequest("since: checkpoint '" + r.since() + "' not found", "since");
        }
        String unusable = r.since() == null ? null : d.checkpoints().problem(r.since());
        if (unusable != null) {
            throw ControlException.conflict("since: " + unusable, "since");
        }
        if (r.checkpoint() != null && (d.checkpoints().find(r.checkpoint()) != null
                || DiskBitmaps.hasBitmap(d, r.checkpoint()))) {
            throw ControlException.conflict("checkpoint: '" + r.checkpoint() + "' exists", "checkpoint");
        }
        ScratchSpec.Kind kind;
        try {
            kind = r.scratch() == null ? ScratchSpec.Kind.SPILL_LZ4 : ScratchSpec.Kind.parse(r.scratch());
        } catch (IllegalArgumentException e) {
            throw ControlException.badRequest(e.getMessage(), "scratch");
        }
        if (r.scratchPath() != null && Files.exists(Path.of(r.scratchPath()))) {
            throw ControlException.badRequest("scratchPath: " + r.scratchPath() + " exists (expected: a new file)",
                    "scratchPath");
        }
        ScratchSpec scratch = new ScratchSpec(kind, r.scratchPath() == null ? null : Path.of(r.scratchPath()),
                tempDir, r.scratchCapacity() == null ? Long.MAX_VALUE : r.scratchCapacity());
        CbwPolicy policy = switch (r.policy() == null ? "break-snapshot" : r.policy()) {
            case "break-snapshot" -> CbwPolicy.BREAK_SNAPSHOT;
            case "break-guest-write" -> CbwPolicy.BREAK_GUEST_WRITE;
            default -> throw ControlException.badRequest("policy: " + r.policy()
                    + " (expected: break-snapshot or break-guest-write)", "policy");
        };
        String id = "backup-" + nextJob.getAndIncrement();
        BackupJob job;
        try {
            if (type.equals("pull")) {
                if (r.target() != null || r.backing() != null || r.compress() != null) {
                    throw ControlException.badRequest("target/backing/compress: given for a pull backup (expected: "
                            + "push only)", r.target() != null ? "target" : r.backing() != null ? "backing"
                            : "compress");
                }
                if (registry.find(PullBackupJob.exportName(r.export())) != null) {
                    throw ControlException.conflict("export '" + PullBackupJob.exportName(r.export()) + "': exists",
                            "export");
                }
                PullBackupJob p = PullBackupJob.begin(id, d, r.since(), r.checkpoint(), scratch, policy);
                job = p;
                wire(job);
                DirtyBitmapSource src = p.bitmap() == null ? DirtyBitmapSource.NONE
                        : BitmapExports.of(List.of(p.bitmap()));
                Export snap = new Export(p.snapshotExport(), "backup " + id + " of " + r.export(), p.exportDevice(),
                        false, false, src, true, true);
                if (!registry.add(snap)) {
                    p.end();
                    throw ControlException.conflict("export '" + p.snapshotExport() + "': exists", "export");
                }
            } else {
                require(r.target(), "target");
                if (Files.exists(Path.of(r.target()))) {
                    throw ControlException.badRequest("target: " + r.target() + " exists (expected: a new file)",
                            "target");
                }
                CompressionType compression = compression(r.compress());
                PushBackupJob p = PushBackupJob.begin(id, d, r.since(), r.checkpoint(), scratch, policy,
                        Path.of(r.target()), r.backing(), compression);
                job = p;
                wire(job);
            }
        } catch (BackupBusyException e) {
            throw ControlException.conflict(e.getMessage(), "export");
        }
        jobs.put(id, job);
        ServerLog.info("backup-begin", "job", id, "type", type, "export", r.export(), "since", r.since(),
                "checkpoint", r.checkpoint(), "scratch", kind.name().toLowerCase(Locale.ROOT));
        return describe(job);
    }

    /**
     * The push target's compression type for the {@code compress} field: {@code "zstd"}, {@code "deflate"},
     * {@code true} for the target's default type (deflate, QEMU's {@code compression_type=zlib}), null for
     * {@code false} or absent.
     *
     * @throws ControlException 400 naming the field for any other value
     */
    static CompressionType compression(Object compress) {
        if (compress == null || Boolean.FALSE.equals(compress)) {
            return null;
        }
        if (Boolean.TRUE.equals(compress)) {
            return CompressionType.DEFLATE;
        }
        if ("zstd".equals(compress)) {
            return CompressionType.ZSTD;
        }
        if ("deflate".equals(compress)) {
            return CompressionType.DEFLATE;
        }
        String shown = compress instanceof String str ? "\"" + str + "\"" : String.valueOf(compress);
        throw ControlException.badRequest("compress: " + shown + " (expected: \"zstd\", \"deflate\", true or "
                + "false)", "compress");
    }

    private void wire(BackupJob job) {
        job.addListener(e -> {
            if (job instanceof PullBackupJob p && e.state().isFinal()) {
                registry.remove(p.snapshotExport());
            }
            ServerLog.info("job-event", "job", e.jobId(), "type", e.type(), "state", e.state(), "message", e.message());
            for (Consumer<JobEvent> l : eventListeners) {
                l.accept(e);
            }
        });
        // The "started" event was published before wiring: replay it to the stream.
        JobEvent started = new JobEvent(job.id(), job.export(), "started", job.state(), job.created(),
                job.progress(), null);
        for (Consumer<JobEvent> l : eventListeners) {
            l.accept(started);
        }
    }

    public List<Map<String, Object>> listJobs() {
        List<Map<String, Object>> out = new ArrayList<>();
        for (BackupJob j : jobs.values()) {
            out.add(describe(j));
        }
        out.sort((a, b) -> Long.compare(Long.parseLong(((String) a.get("id")).substring(7)),
                Long.parseLong(((String) b.get("id")).substring(7))));
        return out;
    }

    public Map<String, Object> getJob(String id) {
        return describe(job(id));
    }

    private BackupJob job(String id) {
        BackupJob j = jobs.get(id);
        if (j == null) {
            throw ControlException.notFound("job '" + id + "': not found");
        }
        return j;
    }

    /** Ends a pull job, aborts a running push job; a final job is forgotten. */
    public Map<String, Object> endJob(String id) throws IOException {
        BackupJob j = job(id);
        if (j.state().isFinal()) {
            jobs.remove(id);
            return describe(j);
        }
        j.end();
        return describe(j);
    }

    /** Ends every running job (server shutdown). */
    public void endAll() {
        for (BackupJob j : jobs.values()) {
            if (!j.state().isFinal()) {
                try {
                    j.end();
                } catch (IOException e) {
                    ServerLog.warn("job-end-failed", "job", j.id(), "message", e.getMessage());
                }
            }
        }
    }

    Map<String, Object> describe(BackupJob j) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("id", j.id());
        m.put("type", j.kind());
        m.put("export", j.export());
        m.put("state", j.state().name().toLowerCase(Locale.ROOT));
        m.put("since", j.sinceCheckpoint());
        m.put("checkpoint", j.newCheckpoint());
        m.put("created", j.created().toString());
        JobProgress p = j.progress();
        m.put("progress", p);
        if (j instanceof PullBackupJob pull) {
            m.put("snapshotExport", pull.snapshotExport());
            m.put("bitmap", pull.bitmap() == null ? null : pull.bitmap().name());
            if (nbdSocket != null) {
                m.put("uri", "nbd+unix:///" + pull.snapshotExport() + "?socket=" + nbdSocket);
            }
        } else if (j instanceof PushBackupJob push) {
            m.put("target", push.target().toString());
        }
        SnapshotStats s = j.snapshotStats();
        if (s != null) {
            Map<String, Object> st = new LinkedHashMap<>();
            st.put("clusterSize", s.clusterSize());
            st.put("coveredClusters", s.coveredClusters());
            st.put("copiedClusters", s.copiedClusters());
            st.put("copiedBytes", s.copiedBytes());
            st.put("releasedClusters", s.releasedClusters());
            st.put("scratchUsedBytes", s.scratchUsedBytes());
            st.put("broken", s.brokenReason());
            m.put("snapshot", st);
        }
        m.put("error", j.error());
        return m;
    }

    // ---- metrics

    /** Appends one histogram in Prometheus text form. */
    private static void histogram(StringBuilder b, String name, String help, NbdMetrics.Histogram h) {
        b.append("# HELP ").append(name).append(' ').append(help).append('\n');
        b.append("# TYPE ").append(name).append(" histogram\n");
        long cumulative = 0;
        for (int i = 0; i <= NbdMetrics.BUCKETS.length; i++) {
            cumulative += h.bucket(i);
            String le = i < NbdMetrics.BUCKETS.length ? Double.toString(NbdMetrics.BUCKETS[i]) : "+Inf";
            b.append(name).append("_bucket{le=\"").append(le).append("\"} ").append(cumulative).append('\n');
        }
        b.append(name).append("_sum ").append(h.sumSeconds()).append('\n');
        b.append(name).append("_count ").append(cumulative).append('\n');
    }

    /** Prometheus text exposition. */
    public String metrics() {
        StringBuilder b = new StringBuilder();
        b.append("# HELP shear_nbd_requests_total NBD requests by command.\n# TYPE shear_nbd_requests_total counter\n");
        for (int i = 0; i < NbdMetrics.COMMANDS.length; i++) {
            b.append("shear_nbd_requests_total{command=\"").append(NbdMetrics.COMMANDS[i]).append("\"} ")
                    .append(NbdMetrics.requests(i)).append('\n');
        }
        b.append("# HELP shear_nbd_bytes_total NBD payload bytes by command.\n# TYPE shear_nbd_bytes_total counter\n");
        b.append("shear_nbd_bytes_total{command=\"read\"} ").append(NbdMetrics.bytes(0)).append('\n');
        b.append("shear_nbd_bytes_total{command=\"write\"} ").append(NbdMetrics.bytes(1)).append('\n');
        histogram(b, "shear_nbd_request_seconds",
                "NBD request execution time on the I/O pool (the device call and building the reply).",
                NbdMetrics.EXECUTE);
        histogram(b, "shear_nbd_queue_seconds",
                "NBD request wait from its decoding to the start of its execution on the I/O pool.",
                NbdMetrics.QUEUE);
        histogram(b, "shear_nbd_reply_seconds",
                "NBD request time from the end of its execution to its last reply written to the socket.",
                NbdMetrics.REPLY);
        b.append("# HELP shear_control_requests_total Control API requests.\n"
                + "# TYPE shear_control_requests_total counter\n");
        b.append("shear_control_requests_total ").append(controlRequests.sum()).append('\n');
        b.append("shear_control_errors_total ").append(controlErrors.sum()).append('\n');
        b.append("# HELP shear_backup_jobs Backup jobs by state.\n# TYPE shear_backup_jobs gauge\n");
        Map<String, Integer> byState = new LinkedHashMap<>();
        for (BackupJob j : jobs.values()) {
            byState.merge(j.state().name().toLowerCase(Locale.ROOT), 1, Integer::sum);
        }
        byState.forEach((k, v) -> b.append("shear_backup_jobs{state=\"").append(k).append("\"} ").append(v)
                .append('\n'));
        b.append("# HELP shear_cbw_copies_total Clusters copied before write.\n"
                + "# TYPE shear_cbw_copies_total counter\n");
        StringBuilder bytes = new StringBuilder("# TYPE shear_cbw_copied_bytes_total counter\n");
        StringBuilder scratch = new StringBuilder("# TYPE shear_scratch_used_bytes gauge\n");
        StringBuilder done = new StringBuilder("# TYPE shear_backup_done_bytes gauge\n");
        for (BackupJob j : jobs.values()) {
            SnapshotStats s = j.snapshotStats();
            String l = "{job=\"" + j.id() + "\",export=\"" + j.export() + "\"} ";
            if (s != null) {
                b.append("shear_cbw_copies_total").append(l).append(s.copiedClusters()).append('\n');
                bytes.append("shear_cbw_copied_bytes_total").append(l).append(s.copiedBytes()).append('\n');
                scratch.append("shear_scratch_used_bytes").append(l).append(j.state().isFinal() ? 0
                        : s.scratchUsedBytes()).append('\n');
            }
            done.append("shear_backup_done_bytes").append(l).append(j.progress().doneBytes()).append('\n');
        }
        b.append(bytes).append(scratch).append(done);
        return b.toString();
    }

    static void require(String value, String field) {
        if (value == null || value.isEmpty()) {
            throw ControlException.badRequest(field + ": missing", field);
        }
    }
}
