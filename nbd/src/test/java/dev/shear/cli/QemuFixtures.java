package dev.shear.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import picocli.CommandLine;

/**
 * Small images made with qemu-img/qemu-io 7.2 ({@code src/test/resources/qemu/}) and what qemu-img
 * printed for them ({@code qemu-expected/NN.txt}: a 3-line header with the arguments, the image and the
 * exit status, then stdout with the image directory written as {@code @DIR@}). Recorded by hand on
 * 2026-11-23; see the commit that added them for the commands.
 *
 * <p>Allocated size on disk and local snapshot dates depend on the machine, so both sides are
 * normalised before comparing ({@link #normalise}).
 */
final class QemuFixtures {
    static final String[] IMAGES = {"base.raw", "mid.qcow2", "plain.qcow2", "snap.qcow2", "top.qcow2",
        "v2.qcow2", "xl2.qcow2", "zstd.qcow2"};

    record Case(String name, List<String> args, String image, int exit, String stdout) {
    }

    record Result(int exit, String stdout, String stderr) {
    }

    private QemuFixtures() {
    }

    static void copyImages(Path dir) throws IOException {
        for (String name : IMAGES) {
            try (InputStream in = QemuFixtures.class.getResourceAsStream("/qemu/" + name)) {
                Files.copy(in, dir.resolve(name));
            }
        }
    }

    static List<Case> cases(String command) {
        List<Case> out = new ArrayList<>();
        for (int i = 1; ; i++) {
            String n = String.format("/qemu-expected/%02d.txt", i);
            try (InputStream in = QemuFixtures.class.getResourceAsStream(n)) {
                if (in == null) {
                    return out;
                }
                String text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
                String[] lines = text.split("\n", 4);
                List<String> args = Arrays.asList(lines[0].substring("# args: ".length()).split(" "));
                Case c = new Case(n, args, lines[1].substring("# image: ".length()),
                        Integer.parseInt(lines[2].substring("# exit: ".length())), lines.length > 3 ? lines[3] : "");
                if (args.get(0).equals(command)) {
                    out.add(c);
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }

    static Result run(String... args) {
        CommandLine cl = ShearMain.newCommandLine();
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int rc = cl.execute(args);
        return new Result(rc, out.toString(), err.toString());
    }

    static String normalise(String s) {
        return s.replaceAll("\"actual-size\": \\d+", "\"actual-size\": N")
                .replaceAll("disk size: .*", "disk size: N")
                .replaceAll("\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d", "DATE");
    }

    /** Runs the case against a copy of the fixtures in {@code dir} and compares with qemu-img's output. */
    static void check(Case c, Path dir) {
        List<String> args = new ArrayList<>(c.args());
        args.add(dir.resolve(c.image()).toString());
        Result r = run(args.toArray(String[]::new));
        String expected = c.stdout().replace("@DIR@", dir.toString());
        assertEquals(normalise(expected), normalise(r.stdout()), c.name() + " " + args + "\nstderr: " + r.stderr());
        assertEquals(c.exit(), r.exit(), c.name() + " exit status; stderr: " + r.stderr());
    }
}
