package dev.shear.cli;

import dev.shear.block.BlockDevice;
import dev.shear.block.BlockException;
import dev.shear.block.Extent;
import dev.shear.block.ImageFormat;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2Image;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/**
 * {@code shear map}: the allocation map of an image and its backing chain, exactly as
 * {@code qemu-img map} 7.2 prints it (qemu-img.c img_map, get_block_status, entry_mergeable,
 * dump_map_entry).
 *
 * <p>Per position, the chain is walked layer by layer from the top: the first layer whose own metadata
 * says data or zero answers ({@code present: true}, its depth); a layer with nothing below it, or whose
 * backing file ends before the position, answers "zero, not present" at its own depth. Each step's
 * length is narrowed to what every layer walked through agrees on. Adjacent entries merge when their
 * flags, depth and file agree and their offsets continue. qemu-img 7.2 prints no "compressed" key:
 * compressed clusters are {@code data: true} without an offset.
 *
 * <p>Known difference: QEMU asks the OS (SEEK_DATA/SEEK_HOLE) about raw files and, for images it judges
 * metadata-preallocated, about the host ranges of data clusters; Java 17 cannot, so raw files are
 * reported as data throughout and host-file holes under allocated clusters are not reported as zero.
 */
@Command(name = "map", mixinStandardHelpOptions = true,
        description = "Show the allocation map of an image, as qemu-img map does.")
final class MapCommand implements Callable<Integer> {
    /** qemu-img map probes at most 1 GiB at a time; merging makes the chunking invisible. */
    private static final long PROBE_BYTES = 1L << 30;

    @Spec
    CommandSpec spec;

    @Option(names = "--output", paramLabel = "FMT", description = "human (default) or json")
    String output = "human";

    @Option(names = "-f", paramLabel = "FMT", description = "image format (raw or qcow2); probed if absent")
    String format;

    @Parameters(index = "0", paramLabel = "IMAGE")
    String image;

    /** One qemu-img MapEntry. */
    record MapEntry(long start, long length, int depth, boolean present, boolean zero, boolean data,
                    boolean hasOffset, long offset, String filename) {
        MapEntry withLength(long l) {
            return new MapEntry(start, l, depth, present, zero, data, hasOffset, offset, filename);
        }

        MapEntry asZero() {
            return new MapEntry(start, length, depth, present, true, false, hasOffset, offset, filename);
        }

        /** qemu-img.c entry_mergeable. */
        boolean mergeableWith(MapEntry next) {
            if (length == 0 || zero != next.zero || data != next.data || depth != next.depth
                    || present != next.present || hasOffset != next.hasOffset
                    || (filename == null) != (next.filename == null)) {
                return false;
            }
            if (filename != null && !filename.equals(next.filename)) {
                return false;
            }
            return !hasOffset || offset + length == next.offset;
        }
    }

    static boolean parseOutput(String output) {
        return switch (output) {
            case "json" -> true;
            case "human" -> false;
            default -> throw new IllegalArgumentException("--output: " + output + " (expected: human or json)");
        };
    }

    @Override
    public Integer call() throws IOException {
        boolean json = parseOutput(output);
        ImageFormat fmt = format == null ? null : ImageFormat.parse(format);
        PrintWriter out = spec.commandLine().getOut();
        try (BlockDevice dev = Images.open(Path.of(image), fmt, true, null)) {
            StringBuilder b = new StringBuilder();
            if (json) {
                b.append('[');
            } else {
                b.append(String.format("%-16s%-16s%-16s%s%n", "Offset", "Length", "Mapped to", "File"));
            }
            long length = dev.size();
            MapEntry curr = new MapEntry(0, 0, 0, false, false, false, false, 0, null);
            try {
                while (curr.start() + curr.length() < length) {
                    long offset = curr.start() + curr.length();
                    MapEntry next = blockStatus(dev, image, offset, Math.min(PROBE_BYTES, length - offset));
                    if (curr.mergeableWith(next)) {
                        curr = curr.withLength(curr.length() + next.length());
                        continue;
                    }
                    if (curr.length() > 0) {
                        next = dump(b, json, curr, next);
                    }
                    curr = next;
                }
                dump(b, json, curr, null);
            } finally {
                out.print(b);
                out.flush();
            }
            if (json) {
                out.println("]");
                out.flush();
            }
        }
        return ShearMain.EXIT_OK;
    }

    /**
     * qemu-img.c dump_map_entry; returns {@code next}, which the human format rewrites so that zero
     * ranges coalesce ("this format ignores the distinction between 0, ZERO and ZERO|DATA").
     */
    private static MapEntry dump(StringBuilder b, boolean json, MapEntry e, MapEntry next) throws BlockException {
        if (json) {
            b.append("{ \"start\": ").append(e.start()).append(", \"length\": ").append(e.length())
                    .append(", \"depth\": ").append(e.depth()).append(", \"present\": ").append(e.present())
                    .append(", \"zero\": ").append(e.zero()).append(", \"data\": ").append(e.data());
            if (e.hasOffset()) {
                b.append(", \"offset\": ").append(e.offset());
            }
            b.append('}');
            if (next != null) {
                b.append(",\n");
            }
            return next;
        }
        if (e.data() && !e.hasOffset()) {
            throw new BlockException(dev.shear.block.BlockErrorKind.NOT_SUPPORTED, null, -1,
                    "File contains external, encrypted or compressed clusters.");
        }
        if (e.data() && !e.zero()) {
            b.append(QemuOutput.hex16(e.start())).append(QemuOutput.hex16(e.length()))
                    .append(QemuOutput.hex16(e.hasOffset() ? e.offset() : 0))
                    .append(e.filename() == null ? "" : e.filename()).append('\n');
        }
        if (next != null && (!next.data() || next.zero())) {
            return next.asZero();
        }
        return next;
    }

    /** qemu-img.c get_block_status: walk the chain from the top for [offset, offset + bytes). */
    static MapEntry blockStatus(BlockDevice top, String topName, long offset, long bytes) throws IOException {
        BlockDevice layer = top;
        String name = topName;
        int depth = 0;
        long n = bytes;
        while (true) {
            Extent e = firstExtent(layer, offset, Math.min(n, layer.size() - offset));
            n = Math.min(n, e.end() - offset);
            boolean hasOffset = e.hostOffset() >= 0;
            if (!e.isHole()) {
                // This layer has it: data, or zero, and allocated (present).
                return new MapEntry(offset, n, depth, true, e.isZero(), e.isData(), hasOffset,
                        hasOffset ? e.hostOffset() : 0, hasOffset ? name : null);
            }
            BlockDevice below = layer instanceof Qcow2Image q ? q.backing() : null;
            if (below == null || offset >= below.size()) {
                // bdrv_co_block_status: nothing below (or past its end) reads as zero, unallocated.
                return new MapEntry(offset, n, depth, false, true, false, hasOffset,
                        hasOffset ? e.hostOffset() : 0, hasOffset ? name : null);
            }
            layer = below;
            name = below.name();
            depth++;
        }
    }

    /** The first extent of one layer's own metadata at {@code offset}. */
    private static Extent firstExtent(BlockDevice layer, long offset, long length) throws IOException {
        Extent[] first = new Extent[1];
        if (layer instanceof Qcow2Image q) {
            q.layerStatus(offset, length, e -> {
                first[0] = e;
                return false;
            });
        } else {
            layer.blockStatus(offset, length, e -> {
                first[0] = e;
                return false;
            });
        }
        if (first[0] == null || first[0].offset() != offset) {
            throw new IllegalStateException("block status of " + layer.name() + " at " + offset + ": " + first[0]);
        }
        return first[0];
    }
}
