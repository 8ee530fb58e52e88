package dev.shear.fleece.job;

import dev.shear.fleece.scratch.Qcow2Scratch;
import dev.shear.fleece.scratch.ScratchTarget;
import dev.shear.fleece.scratch.SpillCodec;
import dev.shear.fleece.scratch.SpillStore;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Locale;

/**
 * Where a backup's copy-before-write data goes: a qcow2 scratch image or a spill store, at a path the
 * user names or as a temporary file in {@code tempDir}; deleted when the backup ends.
 *
 * @param kind          qcow2, or spill with a codec
 * @param path          the file to create (must not exist), or null for a temporary one
 * @param tempDir       where temporary scratch files go
 * @param capacityBytes most bytes the scratch may use, or {@link Long#MAX_VALUE}
 */
public record ScratchSpec(Kind kind, Path path, Path tempDir, long capacityBytes) {

    /** Scratch kinds, by their API names. */
    public enum Kind {
        QCOW2, SPILL_LZ4, SPILL_ZSTD, SPILL_NONE;

        /** "qcow2", "spill-lz4" / "lz4", "spill-zstd" / "zstd", "spill" / "spill-none" / "none". */
        public static Kind parse(String s) {
            return switch (s.toLowerCase(Locale.ROOT)) {
                case "qcow2" -> QCOW2;
                case "spill-lz4", "lz4" -> SPILL_LZ4;
                case "spill-zstd", "zstd" -> SPILL_ZSTD;
                case "spill", "spill-none", "none" -> SPILL_NONE;
                default -> throw new IllegalArgumentException("scratch kind: " + s
                        + " (expected: qcow2, spill-lz4, spill-zstd or spill-none)");
            };
        }
    }

    /** A temporary LZ4 spill store in {@code tempDir}, unbounded. */
    public static ScratchSpec defaults(Path tempDir) {
        return new ScratchSpec(Kind.SPILL_LZ4, null, tempDir, Long.MAX_VALUE);
    }

    /** Creates the target for a device of {@code deviceSize} bytes copied at {@code clusterSize}. */
    public ScratchTarget create(long deviceSize, int clusterSize) throws IOException {
        if (kind == Kind.QCOW2) {
            return path != null ? Qcow2Scratch.create(path, deviceSize, clusterSize, capacityBytes)
                    : Qcow2Scratch.createTemp(tempDir, deviceSize, clusterSize, capacityBytes);
        }
        SpillCodec codec = switch (kind) {
            case SPILL_LZ4 -> SpillCodec.LZ4;
            case SPILL_ZSTD -> SpillCodec.ZSTD;
            default -> SpillCodec.NONE;
        };
        return path != null ? SpillStore.create(path, codec, capacityBytes)
                : SpillStore.createTemp(tempDir, codec, capacityBytes);
    }
}
