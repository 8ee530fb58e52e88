package dev.shear.cli;

import dev.shear.block.BlockDevice;
import dev.shear.block.ImageFile;
import dev.shear.block.ImageFormat;
import dev.shear.block.ImageProbe;
import dev.shear.qcow2.ImageConverter;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2CreateOptions;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code shear convert [-f FMT] [-O qcow2|raw] [-c] [-o OPTIONS] [-B BACKING [-F FMT]] [-l SNAPSHOT] SRC DST}:
 * qemu-img convert's options and meaning ({@link ImageConverter}). The source is read with its backing
 * chain; zero and unallocated ranges are not written; {@code -c} compresses every cluster
 * ({@code -o compression_type=zlib|zstd}); {@code -B} gives the target a backing file and copies only
 * what the source's top layer has.
 */
@Command(name = "convert", mixinStandardHelpOptions = true,
        description = "Convert an image to qcow2 or raw, like qemu-img convert.")
public final class ConvertCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "-f", paramLabel = "FMT", description = "Source format (qcow2 or raw); probed if absent.")
    String format;

    @Option(names = "-O", paramLabel = "FMT", defaultValue = "raw", description = "Target format: qcow2 or raw "
            + "(default raw, as qemu-img).")
    String outputFormat;

    @Option(names = "-c", description = "Compress every cluster of the target (qcow2 only).")
    boolean compress;

    @Option(names = "-o", paramLabel = "OPTIONS", description = "Target options, key=value[,key=value...], as "
            + "shear create.")
    String[] options;

    @Option(names = "-B", paramLabel = "BACKING", description = "Backing file of the target (qcow2 only).")
    String backing;

    @Option(names = "-F", paramLabel = "FMT", description = "Format of the -B backing file; probed if absent.")
    String backingFormat;

    @Option(names = "-l", paramLabel = "SNAPSHOT", description = "Read this internal snapshot of the source: "
            + "snapshot.name=NAME, snapshot.id=ID or NAME.")
    String snapshot;

    @Option(names = "-q", description = "Quiet.")
    boolean quiet;

    @Option(names = "-p", description = "Progress (accepted, not shown).")
    boolean progress;

    @Parameters(index = "0", paramLabel = "SRC", description = "The source image.")
    String source;

    @Parameters(index = "1", paramLabel = "DST", description = "The target image file (created).")
    String target;

    @Override
    public Integer call() throws IOException {
        ImageFormat srcFormat = format == null ? null : parseFormat("-f", format);
        boolean qcow2 = switch (outputFormat) {
            case "qcow2" -> true;
            case "raw" -> false;
            default -> throw usage("-O: " + outputFormat + " (expected: qcow2 or raw)");
        };
        Map<String, String> opts = CreateOptions.parse(spec, options);
        if (!qcow2 && (compress || backing != null || !opts.isEmpty())) {
            throw usage("-O raw: takes no -c, -o or -B (expected: -O qcow2)");
        }
        Qcow2CreateOptions create = null;
        Path dst = Path.of(target);
        if (qcow2) {
            String backingName = backing != null ? backing : opts.get("backing_file");
            String backingFmt = backingFormat != null ? backingFormat : opts.get("backing_fmt");
            if (backingName != null && backingFmt == null) {
                backingFmt = probe(dst, backingName);
            }
            try {
                create = Qcow2CreateOptions.parse(512, opts, backingName, backingFmt);
            } catch (IllegalArgumentException e) {
                throw usage(e.getMessage());
            }
        }
        String snap = snapshot;
        if (snap != null && snap.startsWith("snapshot.name=")) {
            snap = snap.substring("snapshot.name=".length());
        } else if (snap != null && snap.startsWith("snapshot.id=")) {
            snap = snap.substring("snapshot.id=".length());
        }
        try (BlockDevice src = Images.open(Path.of(source), srcFormat, true, snap)) {
            ImageConverter.convert(src, dst, new ImageConverter.Target(qcow2, create, compress,
                    create != null && create.backingFile() != null));
        }
        return ShearMain.EXIT_OK;
    }

    private String probe(Path dst, String backingName) throws IOException {
        Path b = Path.of(backingName);
        if (!b.isAbsolute()) {
            Path parent = dst.toAbsolutePath().getParent();
            b = parent == null ? b : parent.resolve(b);
        }
        try (ImageFile f = ImageFile.open(b, false)) {
            return ImageProbe.probe(f).qemuName();
        }
    }

    private ImageFormat parseFormat(String option, String value) {
        try {
            return ImageFormat.parse(value);
        } catch (IllegalArgumentException e) {
            throw usage(option + ": " + value + " (expected: qcow2 or raw)");
        }
    }

    private CommandLine.ParameterException usage(String message) {
        return new CommandLine.ParameterException(spec.commandLine(), message);
    }
}
