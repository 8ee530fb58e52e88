package dev.shear.cli;

import dev.shear.block.BlockException;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code shear} command: a Unix tool's exit codes and messages. 0 ok; 1 an error, told in one line
 * on stderr ("shear: ..."); 2 a usage error, with the usage of the command at fault. Commands that
 * have exit codes of their own (check: 2 corruptions, 3 leaks, as qemu-img check) return them.
 */
@Command(name = "shear", mixinStandardHelpOptions = true, versionProvider = ShearMain.Version.class,
        description = "A standalone NBD backup server with its own qcow2 engine.",
        subcommands = {CommandLine.HelpCommand.class, InfoCommand.class, MapCommand.class, CheckCommand.class,
            CreateCommand.class, ConvertCommand.class, SnapshotCommand.class, BitmapCommand.class,
            CheckpointCommand.class, CtlCommand.class, DemoCommand.class})
public final class ShearMain {
    public static final int EXIT_OK = 0;
    public static final int EXIT_ERROR = 1;
    public static final int EXIT_USAGE = 2;
    /** The qemu-nbd whose options and protocol choices {@code shear qemu-nbd} follows (nbd-protocol.md). */
    static final String QEMU_NBD_COMPAT_VERSION = "7.2.0";

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /** Runs the command line and returns the exit code; never calls System.exit (tests call this). */
    public static int run(String... args) {
        CommandLine cl = newCommandLine();
        if (args.length > 0 && (args[0].equals("serve") || args[0].equals("qemu-nbd"))) {
            List<String> rest = ServeCommand.preprocess(Arrays.asList(args).subList(1, args.length));
            String refused = ServeCommand.refusedOption(rest);
            if (refused != null) {
                PrintWriter err = cl.getErr();
                err.println("shear: option " + ServeCommand.displayName(refused) + ": not supported by shear " + args[0]
                        + " (kernel devices, partitions, offsets, tracing and snapshot overlays are qemu-nbd only)");
                err.flush();
                return EXIT_USAGE;
            }
            List<String> all = new ArrayList<>();
            all.add(args[0]);
            all.addAll(rest);
            args = all.toArray(new String[0]);
            ((ServeCommand) cl.getSubcommands().get(args[0]).getCommand()).setArguments(rest);
        }
        return cl.execute(args);
    }

    public static CommandLine newCommandLine() {
        CommandLine cl = new CommandLine(new ShearMain());
        cl.addSubcommand("serve", new ServeCommand(false));
        CommandLine qemuNbd = new CommandLine(new ServeCommand(true));
        qemuNbd.getCommandSpec().name("qemu-nbd");
        // Callers parse "qemu-nbd X.Y.Z ..." (ovirt-imageio adds --allocation-depth only for >= 5.2.0).
        qemuNbd.getCommandSpec().versionProvider(() -> new String[] {
            "qemu-nbd " + QEMU_NBD_COMPAT_VERSION + " (" + new Version().getVersion()[0] + ")"});
        cl.getSubcommands().get("serve").getCommandSpec().versionProvider(new Version());
        cl.addSubcommand("qemu-nbd", qemuNbd);
        cl.setExecutionExceptionHandler(ShearMain::handleError);
        cl.setParameterExceptionHandler(ShearMain::handleUsage);
        return cl;
    }

    private static int handleError(Exception e, CommandLine cl, CommandLine.ParseResult parsed) {
        PrintWriter err = cl.getErr();
        err.println("shear: " + oneLine(e));
        if (Boolean.getBoolean("shear.debug")) {
            e.printStackTrace(err);
        }
        err.flush();
        return EXIT_ERROR;
    }

    private static int handleUsage(CommandLine.ParameterException e, String[] args) {
        CommandLine cl = e.getCommandLine();
        PrintWriter err = cl.getErr();
        err.println("shear: " + e.getMessage());
        err.println("Try '" + cl.getCommandSpec().qualifiedName() + " --help' for more information.");
        err.flush();
        // check's exit 2 means "corruptions": its usage errors exit 1, as qemu-img check's do.
        return cl.getCommandSpec().userObject() instanceof CheckCommand ? CheckCommand.EXIT_USAGE : EXIT_USAGE;
    }

    /** The message a user sees: the exception's own words, never a stack trace. */
    static String oneLine(Throwable e) {
        Throwable t = e;
        if (t instanceof UncheckedIOException u && u.getCause() != null) {
            t = u.getCause();
        }
        String m = t.getMessage();
        if (t instanceof BlockException || t instanceof IOException) {
            return m == null ? t.getClass().getSimpleName() : m;
        }
        return m == null ? t.getClass().getName() : t.getClass().getSimpleName() + ": " + m;
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = ShearMain.class.getPackage().getImplementationVersion();
            return new String[] {"shear " + (v == null ? "0.1.0-SNAPSHOT" : v)};
        }
    }
}
