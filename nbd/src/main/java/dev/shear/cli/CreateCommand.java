package dev.shear.cli;

import dev.shear.block.BlockDevice;
import dev.shear.block.ImageFormat;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2CreateOptions;
import dev.shear.qcow2.Qcow2Creator;
import java.io.IOException;
import java.io.RandomAccessFile;
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
 * {@code shear create [-f qcow2|raw] [-o k=v,...] [-b BACKING -F FMT] IMAGE [SIZE]}: qemu-img create's
 * options and size syntax (k/M/G/T suffixes, powers of 1024). raw makes a sparse file of SIZE bytes;
 * qcow2 takes {@link Qcow2CreateOptions}' option names. With a backing file and no SIZE the overlay
 * gets the backing file's size. A relative backing name is stored as given and resolved against the
 * image's directory, as QEMU does.
 */
@Command(name = "create", mixinStandardHelpOptions = true,
        description = "Create a qcow2 or raw image, like qemu-img create.")
public final class CreateCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "-f", paramLabel = "FMT", defaultValue = "raw", description = "qcow2 or raw (default raw, "
            + "as qemu-img).")
    String format;

    @Option(names = "-o", paramLabel = "OPTIONS", description = "Format options, key=value[,key=value...]: "
            + "cluster_size, compat, compression_type, extended_l2, lazy_refcounts, refcount_bits, preallocation, "
            + "backing_file, backing_fmt.")
    String[] options;

    @Option(names = "-b", paramLabel = "BACKING", description = "Backing file (qcow2 only).")
    String backing;

    @Option(names = "-F", paramLabel = "FMT", description = "Backing file format (required with -b).")
    String backingFormat;

    @Option(names = "-q", description = "Quiet.")
    boolean quiet;

    @Parameters(index = "0", paramLabel = "IMAGE", description = "The image file to create.")
    String image;

    @Parameters(index = "1", arity = "0..1", paramLabel = "SIZE", description = "Virtual size, e.g. 64M.")
    String size;

    @Override
    public Integer call() throws IOException {
        Map<String, String> opts = CreateOptions.parse(spec, options);
        Path path = Path.of(image);
        switch (format) {
            case "raw" -> {
                if (backing != null || !opts.isEmpty()) {
                    throw new CommandLine.ParameterException(spec.commandLine(),
                            "raw images take no -o options and no backing file");
                }
                long bytes = parseSize(requireSize());
                try (RandomAccessFile f = new RandomAccessFile(path.toFile(), "rw")) {
                    f.setLength(0);
                    f.setLength(bytes);   // sparse
                }
            }
            case "qcow2" -> {
                String backingName = backing != null ? backing : opts.get("backing_file");
                String backingFmt = backingFormat != null ? backingFormat : opts.get("backing_fmt");
                long bytes;
                if (size != null) {
                    bytes = parseSize(size);
                } else if (backingName != null) {
                    bytes = backingSize(path, backingName, backingFmt);
                } else {
                    bytes = parseSize(requireSize());
                }
                Qcow2CreateOptions o;
                try {
                    o = Qcow2CreateOptions.parse(bytes, opts, backingName, backingFmt);
                } catch (IllegalArgumentException e) {
                    throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
                }
                Qcow2Creator.create(path, o);
            }
            default -> throw new CommandLine.ParameterException(spec.commandLine(),
                    "-f: " + format + " (expected: qcow2 or raw)");
        }
        return ShearMain.EXIT_OK;
    }

    private String requireSize() {
        if (size == null) {
            throw new CommandLine.ParameterException(spec.commandLine(), "SIZE: missing (expected: e.g. 64M)");
        }
        return size;
    }

    private long parseSize(String text) {
        try {
            return Qcow2CreateOptions.parseSize(text);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
        }
    }

    /** The backing file's virtual size, opened read-only by its stated format relative to the image. */
    private long backingSize(Path path, String backingName, String backingFmt) throws IOException {
        if (backingFmt == null) {
            throw new CommandLine.ParameterException(spec.commandLine(), "-F: missing (expected: the backing "
                    + "file's format)");
        }
        Path b = Path.of(backingName);
        if (!b.isAbsolute()) {
            Path parent = path.toAbsolutePath().getParent();
            b = parent == null ? b : parent.resolve(b);
        }
        ImageFormat f = switch (backingFmt) {
            case "qcow2" -> ImageFormat.QCOW2;
            case "raw" -> ImageFormat.RAW;
            default -> throw new CommandLine.ParameterException(spec.commandLine(), "-F: " + backingFmt
                    + " (expected: qcow2 or raw)");
        };
        try (BlockDevice d = Images.open(b, f, true, null)) {
            return d.size();
        }
    }
}
