package dev.shear.cli;

import dev.shear.block.ImageFile;
import dev.shear.block.ImageFormat;
import dev.shear.block.ImageProbe;
import dev.shear.qcow2.CheckResult;
import dev.shear.qcow2.Qcow2Check;
import dev.shear.qcow2.Qcow2Repair;
import java.io.PrintWriter;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code shear check [--output=human|json] [-f FMT] [-q] [-r leaks|all] IMAGE}: a consistency check with
 * the output, messages and exit status of {@code qemu-img check} (qcow2-format.md §12; qemu-img.c
 * {@code img_check}, {@code dump_human_image_check}, {@code dump_json_image_check}).
 *
 * <p>Streams: the findings go to stderr as they are made, one line each, in qemu-img's words; the
 * summary (human or JSON) goes to stdout. Exit status: 0 clean, 1 check failed or internal errors
 * (also usage errors, as qemu-img check), 2 corruptions, 3 leaks only, 63 format without checks (raw).
 * Errors of our own are prefixed "shear: " where qemu-img prefixes "qemu-img: ".
 */
@Command(name = "check", mixinStandardHelpOptions = true,
        description = "Check a qcow2 image for consistency (read-only), like qemu-img check.")
public final class CheckCommand implements Callable<Integer> {
    /** Exit status of usage errors: qemu-img check uses 1 (2 would read as "corruptions"). */
    static final int EXIT_USAGE = 1;

    /**
     * JSON keys in the order qemu-img prints them: QEMU's QDict iterates its hash buckets
     * ({@code tdb_hash(key) % 512}), which puts the keys of ImageCheck in this fixed order.
     */
    static final String[] JSON_KEY_ORDER = {"image-end-offset", "compressed-clusters", "total-clusters",
        "corruptions", "corruptions-fixed", "check-errors", "leaks", "leaks-fixed", "allocated-clusters",
        "filename", "format", "fragmented-clusters"};

    @Spec
    CommandSpec spec;

    @Option(names = "--output", paramLabel = "FMT", defaultValue = "human",
            description = "Output format: human (default) or json.")
    String output;

    @Option(names = "-f", paramLabel = "FMT", description = "Image format (qcow2 or raw); probed if absent.")
    String format;

    @Option(names = "-r", paramLabel = "leaks|all", description = "Repair leaks, or (all) also refcounts that are "
            + "too low and wrong copied flags; anything else is refused and nothing is changed.")
    String repair;

    @Option(names = "-q", description = "Quiet: print no summary.")
    boolean quiet;

    @Parameters(index = "0", paramLabel = "IMAGE", description = "The image file.")
    String image;

    @Override
    public Integer call() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        try {
            return run(out, err);
        } finally {
            out.flush();
            err.flush();
        }
    }

    private int run(PrintWriter out, PrintWriter err) throws Exception {
        boolean json;
        switch (output) {
            case "human" -> json = false;
            case "json" -> json = true;
            default -> {
                err.println("shear: --output must be used with human or json as argument.");
                return EXIT_USAGE;
            }
        }
        if (repair != null) {
            if (!repair.equals("leaks") && !repair.equals("all")) {
                err.println("shear: Unknown option value for -r (expecting 'leaks' or 'all'): " + repair);
                return EXIT_USAGE;
            }
        }
        // An explicit format wins; otherwise probe the magic (the user named this file, so probing is safe).
        ImageFormat requested = null;
        if (format != null) {
            try {
                requested = ImageFormat.parse(format);
            } catch (IllegalArgumentException e) {
                err.println("shear: Unknown file format '" + format + "'");
                return CheckResult.EXIT_CHECK_ERRORS;
            }
        }
        try (ImageFile file = ImageFile.open(Path.of(image), repair != null)) {
            ImageFormat f = requested != null ? requested : ImageProbe.probe(file);
            if (f != ImageFormat.QCOW2) {
                err.println("shear: This image format does not support checks");
                return CheckResult.EXIT_NOT_SUPPORTED;
            }
            // Findings stream to stderr as they are made, like qemu-img's fprintf(stderr, ...).
            Consumer<String> sink = line -> {
                err.println(line);
                err.flush();
            };
            CheckResult r;
            if (repair == null) {
                r = Qcow2Check.check(file, image, sink);
            } else {
                Qcow2Repair.Outcome o = Qcow2Repair.repair(file, image, repair.equals("all") ? Qcow2Repair.Mode.ALL
                        : Qcow2Repair.Mode.LEAKS, sink);
                if (o.refused() != null) {
                    err.println("shear: cannot repair safely: " + o.refused() + "; nothing was changed");
                }
                r = o.result();
                if (r.completed() && (r.corruptionsFixed() != 0 || r.leaksFixed() != 0)) {
                    if (!json && !quiet) {
                        out.print("The following inconsistencies were found and repaired:\n\n"
                                + "    " + r.leaksFixed() + " leaked clusters\n"
                                + "    " + r.corruptionsFixed() + " corruptions\n\n"
                                + "Double checking the fixed image now...\n");
                        out.flush();
                    }
                    CheckResult again = Qcow2Check.check(file, image, sink);
                    r = new CheckResult(again.corruptions(), again.leaks(), again.checkErrors(),
                            r.corruptionsFixed(), r.leaksFixed(), again.imageEndOffset(), again.totalClusters(),
                            again.allocatedClusters(), again.fragmentedClusters(), again.compressedClusters(),
                            again.messages(), again.failure());
                }
            }
            // Where qemu-img's check returned an errno it prints no summary at all, only this line.
            if (!r.completed()) {
                err.println("shear: Check failed: " + r.failure());
                return CheckResult.EXIT_CHECK_ERRORS;
            }
            if (!quiet) {
                out.print(json ? json(r, image, f.qemuName()) : human(r));
            }
            // Internal errors: the summary is printed, then "Check failed", exit 1 (img_check).
            if (r.checkErrors() != 0) {
                err.println("shear: Check failed");
            }
            return r.exitCode();
        }
    }

    /** qemu-img's human summary, byte for byte. */
    static String human(CheckResult r) {
        StringBuilder b = new StringBuilder();
        // Each finding paragraph starts with an empty line; a clean image has one line only.
        if (r.corruptions() == 0 && r.leaks() == 0 && r.checkErrors() == 0) {
            b.append("No errors were found on the image.\n");
        } else {
            if (r.corruptions() != 0) {
                b.append('\n').append(r.corruptions()).append(" errors were found on the image.\n")
                        .append("Data may be corrupted, or further writes to the image may corrupt it.\n");
            }
            if (r.leaks() != 0) {
                b.append('\n').append(r.leaks()).append(" leaked clusters were found on the image.\n")
                        .append("This means waste of disk space, but no harm to data.\n");
            }
            if (r.checkErrors() != 0) {
                b.append('\n').append(r.checkErrors()).append(" internal errors have occurred during the check.\n");
            }
        }
        // The statistics line needs both counts (percentages of allocated would divide by zero).
        if (r.totalClusters() != 0 && r.allocatedClusters() != 0) {
            b.append(r.allocatedClusters()).append('/').append(r.totalClusters()).append(" = ")
                    .append(percent(r.allocatedClusters(), r.totalClusters())).append("% allocated, ")
                    .append(percent(r.fragmentedClusters(), r.allocatedClusters())).append("% fragmented, ")
                    .append(percent(r.compressedClusters(), r.allocatedClusters())).append("% compressed clusters\n");
        }
        if (r.imageEndOffset() != 0) {
            b.append("Image end offset: ").append(r.imageEndOffset()).append('\n');
        }
        return b.toString();
    }

    /**
     * C's {@code %0.2f} of {@code part * 100.0 / whole}: the exact binary value rounded half-even
     * (glibc), which Java's {@code %.2f} (half-up on a decimal rendering) does not always give.
     */
    static String percent(long part, long whole) {
        double v = part * 100.0 / whole;
        return new BigDecimal(v).setScale(2, RoundingMode.HALF_EVEN).toPlainString();
    }

    /**
     * qemu-img's JSON: four-space indent, keys in {@link #JSON_KEY_ORDER}, zero-valued optional keys
     * omitted (check-errors, filename and format are always present), a newline after the brace.
     */
    static String json(CheckResult r, String filename, String format) {
        StringBuilder b = new StringBuilder("{\n");
        boolean first = true;
        for (String key : JSON_KEY_ORDER) {
            String value = switch (key) {
                case "image-end-offset" -> number(r.imageEndOffset());
                case "compressed-clusters" -> number(r.compressedClusters());
                case "total-clusters" -> number(r.totalClusters());
                case "corruptions" -> number(r.corruptions());
                case "corruptions-fixed" -> number(r.corruptionsFixed());
                case "check-errors" -> Long.toString(r.checkErrors());
                case "leaks" -> number(r.leaks());
                case "leaks-fixed" -> number(r.leaksFixed());
                case "allocated-clusters" -> number(r.allocatedClusters());
                case "filename" -> QemuOutput.quote(filename);
                case "format" -> QemuOutput.quote(format);
                case "fragmented-clusters" -> number(r.fragmentedClusters());
                default -> throw new IllegalStateException(key);
            };
            if (value == null) {
                continue;   // has_<key> false in QAPI terms
            }
            if (!first) {
                b.append(",\n");
            }
            first = false;
            b.append("    \"").append(key).append("\": ").append(value);
        }
        return b.append("\n}\n").toString();
    }

    /** An optional counter: omitted (null) when zero, as qemu-img's {@code has_*} fields. */
    private static String number(long v) {
        return v == 0 ? null : Long.toString(v);
    }
}
