package dev.shear.nbd.control;

import dev.shear.bitmap.BitmapManager;
import dev.shear.bitmap.DirtyBitmap;
import dev.shear.bitmap.checkpoint.Checkpoint;
import dev.shear.bitmap.checkpoint.CheckpointChain;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.fleece.job.CheckpointProvider;
import dev.shear.fleece.job.ManagedDisk;
import dev.shear.fleece.job.PersistentCheckpoints;
import dev.shear.nbd.server.ServerLog;
import java.io.IOException;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The bitmap and checkpoint calls of the control API on one {@link ManagedDisk}, for
 * {@link BackupService} (which finds the disk: 404 unknown export, 409 read-only). Two kinds of disk
 * (design.md §Checkpoints and incremental backup):
 * <ul>
 *   <li>a qcow2 image served writable ({@link PersistentCheckpoints}): the calls change the image's
 *       persistent bitmaps through its {@link BitmapManager} and its checkpoint sidecar; listings say
 *       {@code "persistent": true}, and {@code "usable": false} with the problem for a bitmap found
 *       in_use. Checkpoint changes are stored before the call returns; other bitmap changes at the
 *       next flush, checkpoint change or clean stop;</li>
 *   <li>any other writable export (raw): in-memory bitmaps and checkpoints ({@code "persistent":
 *       false}), gone when the server stops; flush and redefine are refused (409).</li>
 * </ul>
 */
final class DiskBitmaps {
    private DiskBitmaps() {
    }

    /** The persistent chain and bitmaps of {@code d}, or null when its checkpoints live in memory. */
    static PersistentCheckpoints persistent(ManagedDisk d) {
        return d.checkpoints() instanceof PersistentCheckpoints p ? p : null;
    }

    /**
     * The image's bitmaps (a qcow2 export: every one, usable or not, in directory order), then the
     * in-memory ones.
     */
    static List<Map<String, Object>> listBitmaps(ManagedDisk d) {
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

    static boolean hasBitmap(ManagedDisk d, String name) {
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
    static Map<String, Object> addBitmap(ManagedDisk d, ControlRequests.AddBitmap r) throws IOException {
        BackupService.require(r.name(), "name");
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
            b = DirtyBitmap.create(r.name(), d.top().size(), g == 0 ? BackupService.DEFAULT_GRANULARITY : g, enabled,
                    false);
        } catch (IllegalArgumentException e) {
            throw ControlException.badRequest(e.getMessage(), "granularity");
        }
        d.tracker().attach(b);
        return describe(b);
    }

    /** Removes a bitmap not owned by a checkpoint (the only change an inconsistent bitmap allows). */
    static void removeBitmap(ManagedDisk d, String name) throws IOException {
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
    static Map<String, Object> bitmapAction(ManagedDisk d, String name, String action,
            ControlRequests.MergeBitmaps merge) throws IOException {
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
    private static Map<String, Object> persistentAction(ManagedDisk d, BitmapManager m, String name, String action,
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
     * {@code POST /exports/E/bitmaps/flush}: stores every persistent bitmap of the export's image now,
     * with in_use clear, and rewrites its checkpoint sidecar. Until the next guest write (which sets
     * in_use again before it reaches the image: BitmapManager#flushBitmaps) the stored bitmaps are exact,
     * so a crash of an idle server keeps them usable.
     *
     * @throws ControlException 409 for an export without persistent bitmaps (raw: they live in
     *         memory); {@link BackupService} answers 404 (unknown) and 409 (read-only) before
     */
    static Map<String, Object> flushBitmaps(ManagedDisk d) throws IOException {
        PersistentCheckpoints p = persistent(d);
        if (p == null) {
            throw ControlException.conflict("export '" + d.name() + "': no persistent bitmaps to flush (expected: a "
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
        m.put("export", d.name());
        m.put("bitmaps", names);
        m.put("checkpoints", chain);
        ServerLog.info("bitmaps-flushed", "export", d.name(), "bitmaps", names.size());
        return m;
    }

    // ---- checkpoints

    static List<Map<String, Object>> listCheckpoints(ManagedDisk d) {
        CheckpointProvider cps = d.checkpoints();
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

    static Map<String, Object> addCheckpoint(ManagedDisk d, ControlRequests.AddCheckpoint r)
            throws IOException {
        BackupService.require(r.name(), "name");
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

    static void removeCheckpoint(ManagedDisk d, String name) throws IOException {
        if (d.checkpoints().find(name) == null) {
            throw ControlException.notFound("checkpoint '" + name + "': not found on export '" + d.name() + "'");
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
    static List<Map<String, Object>> redefineCheckpoints(ManagedDisk d, ControlRequests.RedefineCheckpoints r)
            throws IOException {
        if (r.checkpoints() == null) {
            throw ControlException.badRequest("checkpoints: missing (expected: a list, oldest first; [] clears the "
                    + "chain)", "checkpoints");
        }
        PersistentCheckpoints p = persistent(d);
        if (p == null) {
            throw ControlException.conflict("export '" + d.name() + "': checkpoints live in memory (expected: a qcow2 "
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
        ServerLog.info("checkpoints-redefined", "export", d.name(), "checkpoints", chain.size());
        return listCheckpoints(d);
    }

    /** An INVALID_ARGUMENT refusal as {@code status}; any other failure (I/O) is rethrown (500). */
    private static ControlException invalidOrIo(BlockException e, int status, String field) throws BlockException {
        if (e.kind() != BlockErrorKind.INVALID_ARGUMENT) {
            throw e;
        }
        return new ControlException(status, e.getMessage(), field);
    }
}
