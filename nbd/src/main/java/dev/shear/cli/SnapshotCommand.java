package dev.shear.cli;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import dev.shear.qcow2.Qcow2Image;
import dev.shear.qcow2.Qcow2OpenOptions;
import dev.shear.qcow2.Qcow2Snapshot;
import dev.shear.qcow2.Qcow2SnapshotEngine;
import java.io.IOException;
import java.io.PrintWriter;
import java.math.BigDecimal;
import java.math.MathContext;
import java.nio.file.Path;
import java.time.Instant;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code shear snapshot [-q] (-l | -c NAME | -a NAME | -d NAME) IMAGE}: internal disk snapshots of a
 * qcow2 image with qemu-img snapshot's options, lookups, messages and {@code -l} text
 * ({@link Qcow2SnapshotEngine}; qemu-img.c {@code img_snapshot}, block/snapshot.c
 * {@code bdrv_snapshot_dump}). {@code -a} finds the snapshot by ID, then by name; {@code -d} by name
 * only, as qemu-img 7.2 does. Exit status 0, or 1 with "shear: ..." on stderr.
 */
@Command(name = "snapshot", mixinStandardHelpOptions = true,
        description = "List, create, apply or delete internal (disk) snapshots, like qemu-img snapshot.")
public final class SnapshotCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Action action;

    static final class Action {
        @Option(names = "-l", description = "List the snapshots.")
        boolean list;

        @Option(names = "-c", paramLabel = "NAME", description = "Create a snapshot.")
        String create;

        @Option(names = "-a", paramLabel = "SNAPSHOT", description = "Apply (revert the disk to) a snapshot.")
        String apply;

        @Option(names = "-d", paramLabel = "NAME", description = "Delete a snapshot.")
        String delete;
    }

    @Option(names = "-f", paramLabel = "FMT", description = "Image format (qcow2 only).")
    String format;

    @Option(names = "-q", description = "Quiet.")
    boolean quiet;

    @Parameters(index = "0", paramLabel = "IMAGE", description = "The qcow2 image.")
    String image;

    @Override
    public Integer call() throws IOException {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        try {
            if (format != null && !format.equals("qcow2")) {
                err.println("shear: Format driver '" + format + "' does not support internal snapshots");
                return ShearMain.EXIT_ERROR;
            }
            boolean readOnly = action.list;
            try (Qcow2Image img = Qcow2Image.open(ImageFile.open(Path.of(image), !readOnly),
                    Qcow2OpenOptions.defaults().withReadOnly(readOnly))) {
                if (action.list) {
                    out.print(list(img.snapshots(), ZoneId.systemDefault()));
                    return ShearMain.EXIT_OK;
                }
                Qcow2SnapshotEngine engine = new Qcow2SnapshotEngine(img);
                String verb = action.create != null ? "create" : action.apply != null ? "apply" : "delete";
                String name = action.create != null ? action.create : action.apply != null ? action.apply
                        : action.delete;
                try {
                    if (action.create != null) {
                        engine.create(name);
                    } else if (action.apply != null) {
                        engine.apply(name);
                    } else {
                        if (engine.snapshots().stream().noneMatch(s -> s.name().equals(name))) {
                            err.println("shear: Could not delete snapshot '" + name + "': snapshot not found");
                            return ShearMain.EXIT_ERROR;
                        }
                        engine.delete(name);
                    }
                } catch (BlockException e) {
                    err.println("shear: Could not " + verb + " snapshot '" + name + "': " + e.getMessage());
                    return ShearMain.EXIT_ERROR;
                }
                return ShearMain.EXIT_OK;
            }
        } finally {
            out.flush();
            err.flush();
        }
    }

    /** qemu-img snapshot -l's text: nothing without snapshots (dump_snapshots returns early). */
    static String list(List<Qcow2Snapshot> snapshots, ZoneId zone) {
        if (snapshots.isEmpty()) {
            return "";
        }
        StringBuilder b = new StringBuilder("Snapshot list:\n");
        b.append(String.format("%-10s%-17s%8s%20s%13s%11s", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT"))
                .append('\n');
        DateTimeFormatter date = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss").withZone(zone);
        for (Qcow2Snapshot s : snapshots) {
            long secs = s.vmClockNanos() / 1_000_000_000L;
            String clock = String.format("%02d:%02d:%02d.%03d", (int) (secs / 3600), (int) ((secs / 60) % 60),
                    (int) (secs % 60), (int) ((s.vmClockNanos() / 1_000_000) % 1000));
            String icount = s.icount() == -1 ? "" : Long.toString(s.icount());
            b.append(String.format("%-9s %-16s %8s%20s%13s%11s", s.id(), s.name(), sizeToStr(s.vmStateSize()),
                    date.format(Instant.ofEpochSecond(s.dateSeconds())), clock, icount)).append('\n');
        }
        return b.toString();
    }

    private static final String[] SUFFIXES = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};

    /** QEMU size_to_str: "%0.3g %s" of the value in the largest unit that leaves it >= 0.9765625. */
    static String sizeToStr(long value) {
        if (value <= 0) {
            return "0 B";
        }
        int exp = Math.getExponent(value / (1000.0 / 1024)) + 1;   // frexp's exponent
        int i = (exp - 1) / 10;
        double v = value / (double) (1L << (i * 10));
        String g = new BigDecimal(v).round(new MathContext(3)).stripTrailingZeros().toPlainString();
        return g + " " + SUFFIXES[i];
    }
}
