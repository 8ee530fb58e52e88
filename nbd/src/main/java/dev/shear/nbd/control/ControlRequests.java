package dev.shear.nbd.control;

import java.util.List;

/** The JSON bodies the control API accepts; unknown fields are refused (400, naming the field). */
final class ControlRequests {
    private ControlRequests() {
    }

    /**
     * POST /backups.
     *
     * @param export          the live export to back up (required)
     * @param type            "pull" (default) or "push"
     * @param since           checkpoint to start from (incremental), or null for full
     * @param checkpoint      checkpoint to create at the snapshot point, or null
     * @param scratch         "qcow2", "spill-lz4" (default), "spill-zstd", "spill-none"
     * @param scratchPath     scratch file to create, or null for a temporary one
     * @param scratchCapacity most bytes the scratch may use, or null for unbounded
     * @param policy          "break-snapshot" (default) or "break-guest-write"
     * @param target          push: the qcow2 file to create
     * @param backing         push: backing file recorded in the target (the previous backup), or null
     * @param compress        push: compressed clusters: {@code "zstd"}, {@code "deflate"}, {@code true} (the
     *                        target's default compression type, zlib/deflate as QEMU's), or {@code false} / absent
     *                        for none; a JSON string or boolean, checked by {@link BackupService}
     */
    record BeginBackup(String export, String type, String since, String checkpoint, String scratch,
            String scratchPath, Long scratchCapacity, String policy, String target, String backing, Object compress) {
    }

    /** POST /exports: open an image and serve it. */
    record AddExport(String name, String image, String format, Boolean readOnly) {
    }

    /** POST /exports/{name}/bitmaps. */
    record AddBitmap(String name, Long granularity, Boolean enabled) {
    }

    /** POST /exports/{name}/bitmaps/{bitmap}/merge. */
    record MergeBitmaps(List<String> sources) {
    }

    /** POST /exports/{name}/checkpoints. */
    record AddCheckpoint(String name, String description) {
    }

    /** PUT /exports/{name}/checkpoints: the whole chain, oldest first ([] clears it). */
    record RedefineCheckpoints(List<RedefinedCheckpoint> checkpoints) {
    }

    /**
     * One entry of a redefined chain; its bitmap is the image's bitmap of the same name.
     *
     * @param name        required
     * @param parent      an earlier entry's name; null: the entry before this one (none for the first)
     * @param created     ISO-8601 instant; null: now
     * @param description free text, or null
     */
    record RedefinedCheckpoint(String name, String parent, String created, String description) {
    }
}
