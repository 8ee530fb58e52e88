package dev.shear.nbd.control;

import dev.shear.bitmap.BitmapManager;
import dev.shear.bitmap.DirtyBitmap;
import dev.shear.bitmap.checkpoint.Checkpoint;
import dev.shear.bitmap.checkpoint.CheckpointChain;
import dev.shear.block.BlockDevice;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFormat;
import dev.shear.fleece.CbwPolicy;
import dev.shear.fleece.SnapshotStats;
import dev.shear.fleece.job.BackupBusyException;
import dev.shear.fleece.job.BackupJob;
import dev.shear.fleece.job.CheckpointProvider;
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
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.time.temporal.ChronoUnit;
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
 * ({@link PersistentCheckpoints} over the image's {@link BitmapManager}): the bitmap and checkpoint
 * calls change those, the listings say {@code "persistent": true}, and they survive a restart. Any
 * other writable export (raw) gets in-memory bitmaps and checkpoints ({@code "persistent": false}),
 * gone when the server stops.
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

    // ---- bitmaps

    /** The persistent chain and bitmaps of {@code d}, or null when its checkpoints live in memory. */
    private static PersistentCheckpoints persistent(ManagedDisk d) {
        return d.checkpoints() instanceof PersistentCheckpoints p ? p : null;
    }

    /**
     * The image's bitmaps (a qcow2 export: every one, usable or not, in directory order), then the
     * in-memory ones.
     */
    public List<Map<String, Object>> listBitmaps(String export) {
        ManagedDisk d = disk(export);
        List<Map<String, Object>> out = new ArrayList<>();
        PersistentCheckpoints p = persistent(d);
        if (p != null) {
            for (BitmapManager.BitmapInfo b : p.bitmaps().list()) {
                out.add(describe(b));
            }
        }
        for (DirtyBitmap b : d.tracker().bitmaps()) {
            out.add(describe(b));
        }
        return out;
    }

    /** A bitmap of the image: stored there at a flush, a checkpoint change and a clean stop. */
    private static Map<String, Object> describe(BitmapManager.BitmapInfo b) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", b.name());
        m.put("granularity", b.granularity());
        m.put("enabled", b.enabled());
        m.put("persistent", true);
        m.put("dirtyBytes", b.usable() ? b.dirtyBytes() : null);
        m.put("usable", b.usable());
        m.put("problem", b.problem());
        return m;
    }

    /** An in-memory bitmap: lost when the server stops. */
    private static Map<String, Object> describe(DirtyBitmap b) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", b.name());
        m.put("granularity", b.granularity());
        m.put("enabled", b.isEnabled());
        m.put("persistent", false);
        m.put("dirtyBytes", b.dirtyBytes());
        m.put("usable", true);
        m.put("problem", null);
        return m;
    }

    /** The in-memory bitmap {@code name} of {@code d}, or null. */
    private static DirtyBitmap memoryBitmap(ManagedDisk d, String name) {
        for (DirtyBitmap b : d.tracker().bitmaps()) {
            if (b.name().equals(name)) {
                return b;
            }
        }
        return null;
    }

    private static boolean hasBitmap(ManagedDisk d, String name) {
        PersistentCheckpoints p = persistent(d);
        return (p != null && p.bitmaps().find(name) != null) || memoryBitmap(d, name) != null;
    }

    /** The in-memory bitmap {@code name}; 404 when there is none. */
    private static DirtyBitmap bitmap(ManagedDisk d, String name) {
        DirtyBitmap b = memoryBitmap(d, name);
        if (b == null) {
            throw ControlException.notFound("bitmap '" + name + "': not found on export '" + d.name() + "'");
        }
        return b;
    }

    /**
     * Adds a bitmap: on a qcow2 export a persistent one, recording from now on and stored in the image
     * at the next flush, checkpoint change or clean stop; on a raw export an in-memory one.
     */
    public Map<String, Object> addBitmap(String export, ControlRequests.AddBitmap r) throws IOException {
        ManagedDisk d = disk(export);
        require(r.name(), "name");
        if (hasBitmap(d, r.name())) {
            throw ControlException.conflict("bitmap '" + r.name() + "': exists", "name");
        }
        boolean enabled = r.enabled() == null || r.enabled();
        long g = r.granularity() == null ? 0 : r.granularity();
        if (r.granularity() != null && (g < 1L << DirtyBitmap.MIN_GRANULARITY_BITS
                || g > 1L << DirtyBitmap.MAX_GRANULARITY_BITS || Long.bitCount(g) != 1)) {
            throw ControlException.badRequest("granularity: " + g + " (expected: a power of two, 512..2147483648)",
                    "granularity");
        }
        PersistentCheckpoints p = persistent(d);
        if (p != null) {
            try {
                p.bitmaps().add(r.name(), g, enabled);   // 0: qemu-img's default for the cluster size
            } catch (BlockException e) {
                throw invalidOrIo(e, 400, null);
            }
            return describe(p.bitmaps().find(r.name()));
        }
        DirtyBitmap b;
        try {
            b = DirtyBitmap.create(r.name(), d.top().size(), g == 0 ? DEFAULT_GRANULARITY : g, enabled, false);
        } catch (IllegalArgumentException e) {
            throw ControlException.badRequest(e.getMessage(), "granularity");
        }
        d.tracker().attach(b);
        return describe(b);
    }

    /** Removes a bitmap not owned by a checkpoint (the only change an inconsistent bitmap allows). */
    public void removeBitmap(String export, String name) throws IOException {
        ManagedDisk d = disk(export);
        if (d.checkpoints().find(name) != null) {
            throw ControlException.conflict("bitmap '" + name + "': owned by a checkpoint (expected: delete the "
                    + "checkpoint)", "name");
        }
        PersistentCheckpoints p = persistent(d);
        if (p != null && p.bitmaps().find(name) != null) {
            p.bitmaps().remove(name);
            return;
        }
        d.tracker().detach(bitmap(d, name));
    }

    /** clear, enable, disable, merge. */
    public Map<String, Object> bitmapAction(String export, String name, String action,
            ControlRequests.MergeBitmaps merge) throws IOException {
        ManagedDisk d = disk(export);
        PersistentCheckpoints p = persistent(d);
        if (p != null && p.bitmaps().find(name) != null) {
            return persistentAction(d, p.bitmaps(), name, action, merge);
        }
        DirtyBitmap b = bitmap(d, name);
        switch (action) {
            case "clear" -> b.clear();
            case "enable" -> b.setEnabled(true);
            case "disable" -> b.setEnabled(false);
            case "merge" -> b.merge(mergeSources(d, null, merge).toArray(new DirtyBitmap[0]));
            default -> throw unknownAction(action);
        }
        return describe(b);
    }

    /** An action on a bitmap of the image: refused (409) while it is inconsistent. */
    private Map<String, Object> persistentAction(ManagedDisk d, BitmapManager m, String name, String action,
            ControlRequests.MergeBitmaps merge) throws IOException {
        if (!List.of("clear", "enable", "disable", "merge").contains(action)) {
            throw unknownAction(action);
        }
        BitmapManager.BitmapInfo target = m.find(name);
        if (!target.usable()) {
            throw ControlException.conflict(target.problem() + "; only removing it is allowed", "name");
        }
        switch (action) {
            case "clear" -> m.clear(name);
            case "enable" -> m.setEnabled(name, true);
            case "disable" -> m.setEnabled(name, false);
            default -> {
                for (DirtyBitmap source : mergeSources(d, m, merge)) {
                    m.merge(name, source);
                }
            }
        }
        return describe(m.find(name));
    }

    /** Every source of a merge, checked before anything changes: 404 unknown, 409 inconsistent. */
    private static List<DirtyBitmap> mergeSources(ManagedDisk d, BitmapManager m, ControlRequests.MergeBitmaps merge)
            throws IOException {
        if (merge == null || merge.sources() == null || merge.sources().isEmpty()) {
            throw ControlException.badRequest("sources: missing (expected: bitmap names)", "sources");
        }
        List<DirtyBitmap> out = new ArrayList<>();
        for (String s : merge.sources()) {
            BitmapManager.BitmapInfo info = m == null ? null : m.find(s);
            if (info == null) {
                out.add(bitmap(d, s));
            } else if (!info.usable()) {
                throw ControlException.conflict("sources: " + info.problem(), "sources");
            } else {
                out.add(m.require(s));
            }
        }
        return out;
    }

    private static ControlException unknownAction(String action) {
        return ControlException.notFound("bitmap action '" + action + "' (expected: clear, enable, disable or merge)");
    }

    /**
     * {@code POST /exports/E/bitmaps/flush}: stores every persistent bitmap of the export's image now
     * and rewrites its checkpoint sidecar. The bitmaps keep the in_use flag on disk: the image stays
     * open read-write and tracking goes on, so a reader of the file sees the bits as of the flush but
     * QEMU (and Shear) treat them as inconsistent until a clean stop clears in_use.
     *
     * @throws ControlException 404 unknown export; 409 read-only export, or one without persistent
     *         bitmaps (raw: they live in memory)
     */
    public Map<String, Object> flushBitmaps(String export) throws IOException {
        ManagedDisk d = disk(export);
        PersistentCheckpoints p = persistent(d);
        if (p == null) {
            throw ControlException.conflict("export '" + export + "': no persistent bitmaps to flush (expected: a "
                    + "qcow2 export; a raw image has nowhere to store bitmaps, its bitmaps and checkpoints live in "
                    + "memory)", "export");
        }
        p.flush();
        List<String> names = new ArrayList<>();
        for (BitmapManager.BitmapInfo b : p.bitmaps().list()) {
            names.add(b.name());
        }
        List<String> chain = new ArrayList<>();
        for (CheckpointProvider.Checkpoint c : p.list()) {
            chain.add(c.name());
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("export", export);
        m.put("bitmaps", names);
        m.put("checkpoints", chain);
        m.put("inUse", true);
        ServerLog.info("bitmaps-flushed", "export", export, "bitmaps", names.size());
        return m;
    }

    // ---- checkpoints

    public List<Map<String, Object>> listCheckpoints(String export) {
        CheckpointProvider cps = disk(export).checkpoints();
        List<Map<String, Object>> out = new ArrayList<>();
        for (CheckpointProvider.Checkpoint c : cps.list()) {
            out.add(describe(c, cps));
        }
        return out;
    }

    private static Map<String, Object> describe(CheckpointProvider.Checkpoint c, CheckpointProvider cps) {
        String problem = cps.problem(c.name());
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", c.name());
        m.put("parent", c.parent());
        m.put("created", c.created().toString());
        m.put("description", c.description());
        m.put("persistent", cps.persistent());
        m.put("usable", problem == null);
        m.put("problem", problem);
        return m;
    }

    public Map<String, Object> addCheckpoint(String export, ControlRequests.AddCheckpoint r)
            throws IOException {
        ManagedDisk d = disk(export);
        require(r.name(), "name");
        if (d.checkpoints().find(r.name()) != null) {
            throw ControlException.conflict("checkpoint '" + r.name() + "': exists", "name");
        }
        try {
            // A quiesced instant: persistent chains drain the writes in flight (BitmapManager.atInstant).
            return describe(d.checkpoints().create(r.name(), r.description()), d.checkpoints());
        } catch (BlockException e) {
            throw invalidOrIo(e, 400, "name");
        }
    }

    public void removeCheckpoint(String export, String name) throws IOException {
        ManagedDisk d = disk(export);
        if (d.checkpoints().find(name) == null) {
            throw ControlException.notFound("checkpoint '" + name + "': not found on export '" + export + "'");
        }
        d.checkpoints().delete(name);
    }

    /**
     * {@code PUT /exports/E/checkpoints}: replaces the whole chain (oVirt's way, design.md
     * §Checkpoints), all or nothing. Entries come oldest first; an entry without a parent takes the one
     * before it (none for the first), without a creation time now. Bitmaps are not touched: each
     * checkpoint needs a consistent bitmap of its own name in the image.
     *
     * @throws ControlException 400 for a malformed entry or a chain that breaks the rules (unknown or
     *         later parent, duplicate); 409 naming the first checkpoint whose bitmap is missing or
     *         inconsistent, or for an export whose checkpoints live in memory (raw)
     */
    public List<Map<String, Object>> redefineCheckpoints(String export, ControlRequests.RedefineCheckpoints r)
            throws IOException {
        ManagedDisk d = disk(export);
        if (r.checkpoints() == null) {
            throw ControlException.badRequest("checkpoints: missing (expected: a list, oldest first; [] clears the "
                    + "chain)", "checkpoints");
        }
        PersistentCheckpoints p = persistent(d);
        if (p == null) {
            throw ControlException.conflict("export '" + export + "': checkpoints live in memory (expected: a qcow2 "
                    + "export; a raw image has nowhere to store bitmaps, so there is no chain to redefine)",
                    "export");
        }
        Instant now = Instant.now().truncatedTo(ChronoUnit.SECONDS);
        List<Checkpoint> chain = new ArrayList<>();
        String previous = null;
        for (int i = 0; i < r.checkpoints().size(); i++) {
            ControlRequests.RedefinedCheckpoint c = r.checkpoints().get(i);
            String at = "checkpoints[" + i + "]";
            if (c == null || c.name() == null || c.name().isEmpty()) {
                throw ControlException.badRequest(at + ".name: missing", "checkpoints");
            }
            Instant created = now;
            if (c.created() != null) {
                try {
                    created = Instant.parse(c.created());
                } catch (DateTimeParseException e) {
                    throw ControlException.badRequest(at + ".created: '" + c.created() + "' (expected: an ISO-8601 "
                            + "instant such as 2026-11-23T15:52:22Z)", "checkpoints");
                }
            }
            String parent = c.parent() != null ? c.parent() : previous;
            try {
                chain.add(new Checkpoint(c.name(), parent, created, c.description(), c.name()));
                new CheckpointChain(chain);
            } catch (IllegalArgumentException e) {
                throw ControlException.badRequest(at + ": " + e.getMessage(), "checkpoints");
            }
            previous = c.name();
        }
        try {
            p.checkpoints().redefine(chain);
        } catch (BlockException e) {
            throw invalidOrIo(e, 409, "checkpoints");
        }
        ServerLog.info("checkpoints-redefined", "export", export, "checkpoints", chain.size());
        return listCheckpoints(export);
    }

    /** An INVALID_ARGUMENT refusal as {@code status}; any other failure (I/O) is rethrown (500). */
    private static ControlException invalidOrIo(BlockException e, int status, String field) throws BlockException {
        if (e.kind() != BlockErrorKind.INVALID_ARGUMENT) {
            throw e;
        }
        return new ControlException(status, e.getMessage(), field);
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
        if (r.since() != null && d.checkpoints().find(r.since()) == null && !hasBitmap(d, r.since())) {
            throw ControlException.badRequest("since: checkpoint '" + r.since() + "' not found", "since");
        }
        String unusable = r.since() == null ? null : d.checkpoints().problem(r.since());
        if (unusable != null) {
            throw ControlException.conflict("since: " + unusable, "since");
        }
        if (r.checkpoint() != null && (d.checkpoints().find(r.checkpoint()) != null || hasBitmap(d, r.checkpoint()))) {
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
                        false, false, src, true);
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
                if (Boolean.TRUE.equals(r.compress())) {
                    throw ControlException.badRequest("compress: true (expected: false; compressed cluster writes "
                            + "are not in this build's qcow2 engine yet)", "compress");
                }
                PushBackupJob p = PushBackupJob.begin(id, d, r.since(), r.checkpoint(), scratch, policy,
                        Path.of(r.target()), r.backing(), false);
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
        b.append("# HELP shear_nbd_request_seconds NBD request latency.\n# TYPE shear_nbd_request_seconds histogram\n");
        long cumulative = 0;
        for (int i = 0; i <= NbdMetrics.BUCKETS.length; i++) {
            cumulative += NbdMetrics.bucket(i);
            String le = i < NbdMetrics.BUCKETS.length ? Double.toString(NbdMetrics.BUCKETS[i]) : "+Inf";
            b.append("shear_nbd_request_seconds_bucket{le=\"").append(le).append("\"} ").append(cumulative)
                    .append('\n');
        }
        b.append("shear_nbd_request_seconds_sum ").append(NbdMetrics.latencySumSeconds()).append('\n');
        b.append("shear_nbd_request_seconds_count ").append(cumulative).append('\n');
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

    private static void require(String value, String field) {
        if (value == null || value.isEmpty()) {
            throw ControlException.badRequest(field + ": missing", field);
        }
    }
}
