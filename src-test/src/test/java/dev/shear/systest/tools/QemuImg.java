package dev.shear.systest.tools;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Typed wrapper of {@code qemu-img}. Formats are always passed explicitly ({@code -f}, {@code -F},
 * {@code -O}) so nothing is probed; options are {@code key=value} strings joined into one {@code -o}.
 * Every failure throws {@link ToolException} with the command line and qemu-img's stderr.
 */
public final class QemuImg {
    /** {@code qemu-img check} exit statuses (qemu-format.md §12). */
    public static final int CHECK_CLEAN = 0;
    public static final int CHECK_ERRORS = 1;
    public static final int CHECK_CORRUPTIONS = 2;
    public static final int CHECK_LEAKS = 3;
    public static final int CHECK_UNSUPPORTED = 63;

    private final Tool tool;

    public QemuImg() {
        this(Tool.named("qemu-img"));
    }

    public QemuImg(Tool tool) {
        this.tool = tool;
    }

    public Tool tool() {
        return tool;
    }

    /** Any qemu-img command; requires exit status 0. */
    public ToolResult run(String... args) {
        return tool.check(args);
    }

    /** {@code qemu-img create -f FORMAT [-o OPTIONS] IMAGE SIZE}. */
    public void create(Path image, String format, long sizeBytes, String... options) {
        List<String> a = new ArrayList<>(List.of("create", "-q", "-f", format));
        addOptions(a, options);
        a.add(image.toString());
        a.add(Long.toString(sizeBytes));
        tool.check(a);
    }

    /**
     * {@code qemu-img create -f qcow2 -b BACKING -F BACKING_FORMAT [-o …] OVERLAY [SIZE]}. The backing
     * name is stored as given: pass a name relative to the overlay's directory to get a relative link.
     *
     * @param sizeBytes the overlay's size, or a negative number for the backing file's size
     */
    public void createOverlay(Path overlay, String backingName, String backingFormat, long sizeBytes,
            String... options) {
        List<String> a = new ArrayList<>(List.of("create", "-q", "-f", "qcow2", "-b", backingName,
                "-F", backingFormat));
        addOptions(a, options);
        a.add(overlay.toString());
        if (sizeBytes >= 0) {
            a.add(Long.toString(sizeBytes));
        }
        tool.check(a);
    }

    /**
     * {@code qemu-img convert -f SRC_FMT -O DST_FMT [-c] [-o …] SRC DST}. With {@code compress} every
     * cluster that shrinks is written compressed (deflate unless {@code compression_type=zstd}).
     */
    public void convert(Path src, String srcFormat, Path dst, String dstFormat, boolean compress,
            String... options) {
        List<String> a = new ArrayList<>(List.of("convert", "-f", srcFormat, "-O", dstFormat));
        if (compress) {
            a.add("-c");
        }
        addOptions(a, options);
        a.add(src.toString());
        a.add(dst.toString());
        tool.check(a);
    }

    /** The guest-visible bytes of {@code src} (with its backing chain) as a raw file: the reference. */
    public void convertToRaw(Path src, String srcFormat, Path dst) {
        convert(src, srcFormat, dst, "raw", false);
    }

    /** The guest-visible bytes of internal snapshot {@code name} of {@code src} as a raw file. */
    public void convertSnapshotToRaw(Path src, String snapshotName, Path dst) {
        tool.check("convert", "-f", "qcow2", "-l", "snapshot.name=" + snapshotName, "-O", "raw",
                src.toString(), dst.toString());
    }

    /** {@code qemu-img info --output=json}; {@code format} may be null to let qemu-img probe. */
    public JsonNode infoJson(Path image, String format) {
        ToolResult r = tool.check(withFormat(List.of("info", "--output=json"), format, image));
        return Json.parse(r.stdout(), "qemu-img info " + image);
    }

    /** {@code qemu-img map --output=json}: an array of {start, length, depth, present, zero, data, offset?}. */
    public JsonNode mapJson(Path image, String format) {
        ToolResult r = tool.check(withFormat(List.of("map", "--output=json"), format, image));
        return Json.parse(r.stdout(), "qemu-img map " + image);
    }

    /** The outcome of {@code qemu-img check --output=json}: the exit status and the JSON, if any. */
    public record CheckResult(int exitCode, JsonNode json, ToolResult raw) {
        /** A numeric key of the JSON; qemu-img omits zero-valued keys, so missing = 0. */
        public long count(String key) {
            return json == null || !json.has(key) ? 0 : json.get(key).asLong();
        }
    }

    /** {@code qemu-img check --output=json}; exit statuses 0, 1, 2, 3 and 63 are answers, not failures. */
    public CheckResult check(Path image, String format) {
        List<String> args = withFormat(List.of("check", "--output=json"), format, image);
        ToolResult r = tool.expect(args, CHECK_CLEAN, CHECK_ERRORS, CHECK_CORRUPTIONS, CHECK_LEAKS,
                CHECK_UNSUPPORTED);
        String out = r.stdout().strip();
        JsonNode json = out.startsWith("{") ? Json.parse(out, "qemu-img check " + image) : null;
        return new CheckResult(r.exitCode(), json, r);
    }

    /** {@code qemu-img compare}: true if the guest-visible contents are equal. */
    public boolean compare(Path a, String formatA, Path b, String formatB) {
        ToolResult r = tool.expect(List.of("compare", "-q", "-f", formatA, "-F", formatB, a.toString(),
                b.toString()), 0, 1);
        return r.exitCode() == 0;
    }

    /** {@code qemu-img snapshot -c NAME IMAGE}. */
    public void snapshotCreate(Path image, String name) {
        tool.check("snapshot", "-c", name, image.toString());   // 7.2 has no -f here
    }

    /** {@code qemu-img snapshot -l IMAGE}: the table as qemu-img prints it. */
    public String snapshotList(Path image) {
        return tool.check("snapshot", "-l", image.toString()).stdout();
    }

    /** {@code qemu-img bitmap --add -g GRANULARITY IMAGE NAME}. */
    public void bitmapAdd(Path image, String name, long granularityBytes) {
        tool.check("bitmap", "-f", "qcow2", "--add", "-g", Long.toString(granularityBytes), image.toString(),
                name);
    }

    /** {@code qemu-img bitmap --disable IMAGE NAME}. */
    public void bitmapDisable(Path image, String name) {
        bitmap(image, name, "--disable");
    }

    /** {@code qemu-img bitmap --enable IMAGE NAME}. */
    public void bitmapEnable(Path image, String name) {
        bitmap(image, name, "--enable");
    }

    /** {@code qemu-img bitmap --clear IMAGE NAME}. */
    public void bitmapClear(Path image, String name) {
        bitmap(image, name, "--clear");
    }

    /** {@code qemu-img bitmap --remove IMAGE NAME}. */
    public void bitmapRemove(Path image, String name) {
        bitmap(image, name, "--remove");
    }

    /** {@code qemu-img bitmap --merge SOURCE IMAGE TARGET}: ORs bitmap {@code source} into {@code target}. */
    public void bitmapMerge(Path image, String source, String target) {
        tool.check("bitmap", "-f", "qcow2", "--merge", source, image.toString(), target);
    }

    private void bitmap(Path image, String name, String op) {
        tool.check("bitmap", "-f", "qcow2", op, image.toString(), name);
    }

    private static List<String> withFormat(List<String> head, String format, Path image) {
        List<String> a = new ArrayList<>(head);
        if (format != null) {
            a.add("-f");
            a.add(format);
        }
        a.add(image.toString());
        return a;
    }

    private static void addOptions(List<String> a, String... options) {
        List<String> opts = Arrays.stream(options).filter(o -> o != null && !o.isEmpty()).toList();
        if (!opts.isEmpty()) {
            a.add("-o");
            a.add(String.join(",", opts));
        }
    }
}
