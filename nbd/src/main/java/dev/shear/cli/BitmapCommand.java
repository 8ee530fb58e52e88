package dev.shear.cli;

import dev.shear.bitmap.BitmapManager;
import dev.shear.bitmap.DirtyBitmap;
import dev.shear.bitmap.PersistentBitmaps;
import dev.shear.block.BlockDevice;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFormat;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2CreateOptions;
import dev.shear.qcow2.Qcow2Image;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code shear bitmap (--add | --remove | --clear | --enable | --disable | --merge SOURCE)...
 * [-b SOURCE_FILE [-F SOURCE_FMT]] [-g GRANULARITY] [-f FMT] IMAGE BITMAP}: qemu-img bitmap's
 * options and meaning (dirty-bitmaps.md §5). Several actions apply to BITMAP in command-line order.
 *
 * <p>Where it differs on purpose: all or nothing. qemu-img stores the actions that succeeded before a
 * failing one; Shear stores nothing when any action fails (a bad command line changes nothing).
 */
@Command(name = "bitmap", mixinStandardHelpOptions = true,
        description = "Add, remove, clear, enable, disable or merge a persistent bitmap, like qemu-img bitmap.")
public final class BitmapCommand implements Callable<Integer> {
    private final List<String[]> actions = new ArrayList<>();

    @Option(names = "--add", description = "Create BITMAP: persistent, enabled (see -g, --disable).")
    void add(boolean v) {
        actions.add(new String[] {"add"});
    }

    @Option(names = "--remove", description = "Delete BITMAP from the image (allowed on an inconsistent one).")
    void remove(boolean v) {
        actions.add(new String[] {"remove"});
    }

    @Option(names = "--clear", description = "Reset every bit of BITMAP.")
    void clear(boolean v) {
        actions.add(new String[] {"clear"});
    }

    @Option(names = "--enable", description = "Start recording writes in BITMAP.")
    void enable(boolean v) {
        actions.add(new String[] {"enable"});
    }

    @Option(names = "--disable", description = "Stop recording writes in BITMAP.")
    void disable(boolean v) {
        actions.add(new String[] {"disable"});
    }

    @Option(names = "--merge", paramLabel = "SOURCE",
            description = "OR bitmap SOURCE (of IMAGE, or of -b) into BITMAP.")
    void merge(String source) {
        actions.add(new String[] {"merge", source});
    }

    @Option(names = "-g", paramLabel = "GRANULARITY",
            description = "Granularity for --add (power of two, 512..2G; default: cluster size clamped to 4K..64K).")
    String granularity;

    @Option(names = "-b", paramLabel = "SOURCE_FILE", description = "Image holding the --merge sources.")
    Path sourceFile;

    @Option(names = "-F", paramLabel = "SOURCE_FMT", description = "Format of -b (qcow2).")
    String sourceFormat;

    @Option(names = "-f", paramLabel = "FMT", description = "Image format (qcow2).")
    String format;

    @Parameters(index = "0", paramLabel = "IMAGE")
    Path image;

    @Parameters(index = "1", paramLabel = "BITMAP")
    String bitmap;

    @Override
    public Integer call() throws Exception {
        if (actions.isEmpty()) {
            throw new picocli.CommandLine.ParameterException(new picocli.CommandLine(this),
                    "need at least one of --add, --remove, --clear, --enable, --disable, --merge");
        }
        long g = 0;
        if (granularity != null) {
            try {
                g = Qcow2CreateOptions.parseSize(granularity);
            } catch (IllegalArgumentException e) {
                throw BlockException.invalid(image.toString(), -1, "granularity: %s (expected: a size such as 64K)",
                        granularity);
            }
            if (g == 0) {
                throw BlockException.invalid(image.toString(), -1, "granularity: 0 (expected: 512..2G)");
            }
        }
        try (Qcow2Image img = openQcow2(image, format, false)) {
            BitmapManager m = BitmapManager.open(img, BitmapManager.Mode.EDIT);
            try {
                for (String[] a : actions) {
                    apply(m, a, g);
                }
            } catch (IOException | RuntimeException e) {
                m.discard();
                throw e;
            }
            m.close();
        }
        return ShearMain.EXIT_OK;
    }

    private void apply(BitmapManager m, String[] a, long g) throws IOException {
        try {
            switch (a[0]) {
                case "add" -> m.add(bitmap, g, true);
                case "remove" -> m.remove(bitmap);
                case "clear" -> m.clear(bitmap);
                case "enable" -> m.setEnabled(bitmap, true);
                case "disable" -> m.setEnabled(bitmap, false);
                case "merge" -> m.merge(bitmap, source(m, a[1]));
                default -> throw new IllegalStateException(a[0]);
            }
        } catch (BlockException e) {
            throw new BlockException(e.kind(), e.resource(), -1, "operation " + a[0] + " on bitmap " + bitmap
                    + " failed: " + e.detail(), e);
        }
    }

    private DirtyBitmap source(BitmapManager m, String name) throws IOException {
        if (sourceFile == null) {
            return m.require(name);
        }
        try (Qcow2Image src = openQcow2(sourceFile, sourceFormat, true)) {
            return PersistentBitmaps.load(src).require(name);
        }
    }

    static Qcow2Image openQcow2(Path p, String fmt, boolean readOnly) throws IOException {
        ImageFormat f = fmt == null ? null : ImageFormat.parse(fmt);
        BlockDevice d = Images.open(p, f, readOnly, null);
        if (d instanceof Qcow2Image q) {
            return q;
        }
        d.close();
        throw BlockException.invalid(p.toString(), -1, "format: raw (expected: qcow2; only qcow2 images have "
                + "persistent bitmaps)");
    }
}
