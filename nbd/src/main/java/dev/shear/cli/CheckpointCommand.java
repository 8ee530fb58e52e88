package dev.shear.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shear.bitmap.BitmapManager;
import dev.shear.bitmap.PersistentBitmaps;
import dev.shear.bitmap.checkpoint.Checkpoint;
import dev.shear.bitmap.checkpoint.CheckpointStore;
import dev.shear.bitmap.checkpoint.Checkpoints;
import dev.shear.block.BlockException;
import dev.shear.qcow2.Qcow2CreateOptions;
import dev.shear.qcow2.Qcow2Image;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code shear checkpoint create|list|delete|redefine IMAGE ...}: the offline checkpoint chain of a
 * qcow2 image (design.md §Checkpoints; sidecar IMAGE.checkpoints). The image must not be in use.
 * <pre>
 * shear checkpoint create [-g GRANULARITY] [-d DESCRIPTION] IMAGE NAME
 * shear checkpoint list [--output=human|json] IMAGE
 * shear checkpoint delete IMAGE NAME
 * shear checkpoint redefine [--created NAME=ISO-INSTANT]... [-d NAME=TEXT]... IMAGE [NAME...]
 *                           (oldest first; each one's parent is the one before it; none clears)
 * </pre>
 */
@Command(name = "checkpoint", mixinStandardHelpOptions = true,
        description = "Create, list, delete or redefine the checkpoints of a qcow2 image.",
        subcommands = {CheckpointCommand.Create.class, CheckpointCommand.ListCmd.class,
            CheckpointCommand.Delete.class, CheckpointCommand.Redefine.class})
public final class CheckpointCommand {

    /** Opens the image read-write for a change, runs it, stores the bitmaps; nothing stored on failure. */
    interface Change {
        void apply(Checkpoints c) throws IOException;
    }

    static void change(Path image, Change change) throws IOException {
        try (Qcow2Image img = BitmapCommand.openQcow2(image, null, false)) {
            BitmapManager m = BitmapManager.open(img, BitmapManager.Mode.EDIT);
            try {
                change.apply(Checkpoints.open(image, m));
            } catch (IOException | RuntimeException e) {
                m.close();   // what was flushed before the failure stays consistent with the sidecar
                throw e;
            }
            m.close();
        }
    }

    @Command(name = "create", mixinStandardHelpOptions = true,
            description = "Create a checkpoint: a new enabled persistent bitmap named NAME; parent = newest.")
    static final class Create implements Callable<Integer> {
        @Option(names = "-g", paramLabel = "GRANULARITY", description = "Bitmap granularity (default as qemu-img).")
        String granularity;

        @Option(names = {"-d", "--description"}, paramLabel = "TEXT", defaultValue = "")
        String description;

        @Parameters(index = "0", paramLabel = "IMAGE")
        Path image;

        @Parameters(index = "1", paramLabel = "NAME")
        String name;

        @Override
        public Integer call() throws Exception {
            long g = granularity == null ? 0 : Qcow2CreateOptions.parseSize(granularity);
            change(image, c -> c.create(name, description, g, null));
            return ShearMain.EXIT_OK;
        }
    }

    @Command(name = "list", mixinStandardHelpOptions = true,
            description = "List the checkpoints, oldest first, with parent, time, description and usability.")
    static final class ListCmd implements Callable<Integer> {
        @Spec
        CommandSpec spec;

        @Option(names = "--output", paramLabel = "FMT", defaultValue = "human", description = "human or json")
        String output;

        @Parameters(index = "0", paramLabel = "IMAGE")
        Path image;

        @Override
        public Integer call() throws Exception {
            if (!output.equals("human") && !output.equals("json")) {
                throw new picocli.CommandLine.ParameterException(spec.commandLine(),
                        "--output: " + output + " (expected: human or json)");
            }
            List<Checkpoints.Status> list;
            try (Qcow2Image img = BitmapCommand.openQcow2(image, null, true)) {
                list = Checkpoints.status(CheckpointStore.read(image), Checkpoints.index(PersistentBitmaps.load(img)));
            }
            PrintWriter out = spec.commandLine().getOut();
            if (output.equals("json")) {
                ObjectMapper om = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
                ArrayNode arr = om.createArrayNode();
                for (Checkpoints.Status s : list) {
                    Checkpoint c = s.checkpoint();
                    ObjectNode n = arr.addObject();
                    n.put("name", c.name());
                    n.put("parent", c.parent());
                    n.put("created", c.created().toString());
                    n.put("description", c.description());
                    n.put("bitmap", c.bitmap());
                    n.put("usable", s.usable());
                    if (s.problem() != null) {
                        n.put("problem", s.problem());
                    }
                }
                out.println(om.writeValueAsString(arr));
            } else {
                out.printf("%-20s %-20s %-20s %-6s %s%n", "NAME", "PARENT", "CREATED", "USABLE",
                        "DESCRIPTION / PROBLEM");
                for (Checkpoints.Status s : list) {
                    Checkpoint c = s.checkpoint();
                    out.printf("%-20s %-20s %-20s %-6s %s%n", c.name(), c.parent() == null ? "-" : c.parent(),
                            c.created(), s.usable() ? "yes" : "no", s.usable() ? c.description() : s.problem());
                }
            }
            out.flush();
            return ShearMain.EXIT_OK;
        }
    }

    @Command(name = "delete", mixinStandardHelpOptions = true,
            description = "Delete a checkpoint and its bitmap; its children take its parent.")
    static final class Delete implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "IMAGE")
        Path image;

        @Parameters(index = "1", paramLabel = "NAME")
        String name;

        @Override
        public Integer call() throws Exception {
            change(image, c -> c.delete(name));
            return ShearMain.EXIT_OK;
        }
    }

    @Command(name = "redefine", mixinStandardHelpOptions = true,
            description = "Replace the whole chain: NAMEs oldest first, each the parent of the next; each must "
                    + "have a consistent bitmap of the same name. All or nothing.")
    static final class Redefine implements Callable<Integer> {
        @Option(names = "--created", paramLabel = "NAME=INSTANT", description = "Creation time of NAME (ISO-8601).")
        List<String> created = new ArrayList<>();

        @Option(names = {"-d", "--description"}, paramLabel = "NAME=TEXT")
        List<String> descriptions = new ArrayList<>();

        @Parameters(index = "0", paramLabel = "IMAGE")
        Path image;

        @Parameters(index = "1..*", paramLabel = "NAME")
        List<String> names = new ArrayList<>();

        @Override
        public Integer call() throws Exception {
            String bad = NameValues.firstUnknown(names, List.of(created, descriptions));
            if (bad != null) {
                throw BlockException.invalid(image.toString(), -1, "--created/--description %s (expected: "
                        + "NAME=VALUE for one of the NAMEs given: %s)", bad, names);
            }
            List<Checkpoint> chain = new ArrayList<>();
            String parent = null;
            Instant now = Instant.now().truncatedTo(java.time.temporal.ChronoUnit.SECONDS);
            for (String n : names) {
                String when = NameValues.valueOf(created, n);
                Instant t;
                try {
                    t = when == null ? now : Instant.parse(when);
                } catch (DateTimeParseException e) {
                    throw BlockException.invalid(image.toString(), -1, "--created %s=%s (expected: an ISO-8601 "
                            + "instant such as 2026-11-23T15:52:22Z)", n, when);
                }
                String d = NameValues.valueOf(descriptions, n);
                chain.add(new Checkpoint(n, parent, t, d == null ? "" : d, n));
                parent = n;
            }
            change(image, c -> c.redefine(chain));
            return ShearMain.EXIT_OK;
        }
    }
}
