package dev.shear.cli;

import dev.shear.block.BlockDevice;
import dev.shear.block.ImageFormat;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2Header;
import dev.shear.qcow2.Qcow2Image;
import dev.shear.qcow2.Qcow2Snapshot;
import dev.shear.qcow2.bitmap.BitmapDirectoryEntry;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Instant;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/**
 * {@code shear info}: what {@code qemu-img info} prints, field for field (QAPI ImageInfo, qemu-img 7.2).
 *
 * <p>JSON keys, their order and shapes, and the human layout follow qemu-img 7.2 exactly (see
 * {@link QemuOutput}); {@code actual-size} is the file's allocated size ({@code st_blocks * 512}), which
 * Java cannot read: it is taken from {@code stat(1)}, and omitted ("disk size: unavailable") when that
 * fails.
 */
@Command(name = "info", mixinStandardHelpOptions = true,
        description = "Show information about an image, as qemu-img info does.")
final class InfoCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--output", paramLabel = "FMT", description = "human (default) or json")
    String output = "human";

    @Option(names = "-f", paramLabel = "FMT", description = "image format (raw or qcow2); probed if absent")
    String format;

    @Option(names = "--backing-chain", description = "show every image of the backing chain")
    boolean backingChain;

    @Parameters(index = "0", paramLabel = "IMAGE")
    String image;

    @Override
    public Integer call() throws IOException {
        boolean json = MapCommand.parseOutput(output);
        ImageFormat fmt = format == null ? null : ImageFormat.parse(format);
        List<Map<String, Object>> infos = new ArrayList<>();
        try (BlockDevice dev = Images.open(Path.of(image), fmt, true, null)) {
            BlockDevice layer = dev;
            String name = image;
            while (layer != null) {
                infos.add(imageInfo(layer, name));
                if (!backingChain || !(layer instanceof Qcow2Image q) || q.backing() == null) {
                    break;
                }
                layer = q.backing();
                name = layer.name();
            }
        }
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            out.println(QemuOutput.json(backingChain ? infos : infos.get(0)));
        } else {
            StringBuilder b = new StringBuilder();
            for (int i = 0; i < infos.size(); i++) {
                if (i > 0) {
                    b.append('\n');
                }
                human(infos.get(i), b);
            }
            out.print(b);
        }
        out.flush();
        return ShearMain.EXIT_OK;
    }

    /** QAPI ImageInfo of one layer; {@code name} is the file name as qemu-img shows it. */
    static Map<String, Object> imageInfo(BlockDevice dev, String name) throws IOException {
        Map<String, Object> info = new LinkedHashMap<>();
        Path path = Path.of(name);
        info.put("filename", name);
        info.put("format", dev instanceof Qcow2Image ? "qcow2" : "raw");
        Qcow2Image q = dev instanceof Qcow2Image qi ? qi : null;
        info.put("dirty-flag", q != null && q.isDirty());
        long actual = allocatedSize(path);
        if (actual >= 0) {
            info.put("actual-size", actual);
        }
        info.put("virtual-size", dev.size());
        if (q == null) {
            return info;
        }
        Qcow2Header h = q.header();
        info.put("cluster-size", (long) h.clusterSize());
        if (h.backingFileName() != null) {
            info.put("backing-filename", h.backingFileName());
            info.put("full-backing-filename", resolveBacking(name, h.backingFileName()));
            if (h.backingFormat() != null) {
                info.put("backing-filename-format", h.backingFormat());
            }
        }
        if (!q.snapshots().isEmpty()) {
            List<Object> snaps = new ArrayList<>();
            for (Qcow2Snapshot s : q.snapshots()) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("id", s.id());
                m.put("name", s.name());
                m.put("vm-state-size", s.vmStateSize());
                m.put("date-sec", s.dateSeconds());
                m.put("date-nsec", (long) s.dateNanos());
                m.put("vm-clock-sec", s.vmClockNanos() / 1_000_000_000L);
                m.put("vm-clock-nsec", s.vmClockNanos() % 1_000_000_000L);
                if (s.icount() != -1) {
                    m.put("icount", s.icount());
                }
                snaps.add(m);
            }
            info.put("snapshots", snaps);
        }
        info.put("format-specific", formatSpecific(q));
        return info;
    }

    /** QAPI ImageInfoSpecificQCow2 (block/qcow2.c qcow2_get_specific_info). */
    private static Map<String, Object> formatSpecific(Qcow2Image q) {
        Qcow2Header h = q.header();
        Map<String, Object> data = new LinkedHashMap<>();
        if (h.version() == 2) {
            data.put("compat", "0.10");
            data.put("refcount-bits", (long) h.refcountBits());
        } else {
            data.put("compat", "1.1");
            data.put("extended-l2", h.hasExtendedL2());
            data.put("lazy-refcounts", h.hasLazyRefcounts());
            data.put("corrupt", h.isCorrupt());
            data.put("refcount-bits", (long) h.refcountBits());
            if (!q.bitmaps().isEmpty()) {
                List<Object> bitmaps = new ArrayList<>();
                for (BitmapDirectoryEntry e : q.bitmaps()) {
                    Map<String, Object> m = new LinkedHashMap<>();
                    m.put("name", e.name());
                    m.put("granularity", e.granularity());
                    List<Object> flags = new ArrayList<>();
                    if (e.inUse()) {
                        flags.add("in-use");
                    }
                    if (e.auto()) {
                        flags.add("auto");
                    }
                    m.put("flags", flags);
                    bitmaps.add(m);
                }
                data.put("bitmaps", bitmaps);
            }
        }
        data.put("compression-type", h.compressionTypeName());
        Map<String, Object> spec = new LinkedHashMap<>();
        spec.put("type", "qcow2");
        spec.put("data", data);
        return spec;
    }

    /** QEMU path_combine(overlay name as given, backing name). */
    static String resolveBacking(String overlay, String backing) {
        if (backing.startsWith("/")) {
            return backing;
        }
        int slash = overlay.lastIndexOf('/');
        return slash < 0 ? backing : overlay.substring(0, slash + 1) + backing;
    }

    /**
     * st_blocks * 512, as qemu-img's actual-size. Java exposes no st_blocks, so ask stat(1); -1 if that
     * is impossible (then the key is omitted, as qemu-img does when it cannot tell).
     */
    static long allocatedSize(Path p) {
        try {
            Process proc = new ProcessBuilder("stat", "-L", "-c", "%b %B", p.toString())
                    .redirectErrorStream(true).start();
            String outText = new String(proc.getInputStream().readAllBytes(), StandardCharsets.US_ASCII).trim();
            if (!proc.waitFor(10, TimeUnit.SECONDS) || proc.exitValue() != 0) {
                return -1;
            }
            String[] parts = outText.split(" ");
            return Long.parseLong(parts[0]) * Long.parseLong(parts[1]);
        } catch (IOException | NumberFormatException | ArrayIndexOutOfBoundsException e) {
            return -1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return -1;
        }
    }

    /** block/qapi.c bdrv_image_info_dump. */
    @SuppressWarnings("unchecked")
    static void human(Map<String, Object> info, StringBuilder b) {
        long size = (Long) info.get("virtual-size");
        Object actual = info.get("actual-size");
        b.append("image: ").append(info.get("filename")).append('\n');
        b.append("file format: ").append(info.get("format")).append('\n');
        b.append("virtual size: ").append(QemuOutput.sizeToStr(size)).append(" (").append(size).append(" bytes)\n");
        b.append("disk size: ").append(actual == null ? "unavailable" : QemuOutput.sizeToStr((Long) actual))
                .append('\n');
        if (info.containsKey("cluster-size")) {
            b.append("cluster_size: ").append(info.get("cluster-size")).append('\n');
        }
        if (Boolean.TRUE.equals(info.get("dirty-flag"))) {
            b.append("cleanly shut down: no\n");
        }
        if (info.containsKey("backing-filename")) {
            String bf = (String) info.get("backing-filename");
            String full = (String) info.get("full-backing-filename");
            b.append("backing file: ").append(bf);
            if (!bf.equals(full)) {
                b.append(" (actual path: ").append(full).append(')');
            }
            b.append('\n');
            if (info.containsKey("backing-filename-format")) {
                b.append("backing file format: ").append(info.get("backing-filename-format")).append('\n');
            }
        }
        if (info.containsKey("snapshots")) {
            b.append("Snapshot list:\n");
            b.append(String.format("%-10s%-17s%8s%20s%13s%11s", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT"))
                    .append('\n');
            DateTimeFormatter date = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss")
                    .withZone(ZoneId.systemDefault());
            for (Object o : (List<Object>) info.get("snapshots")) {
                Map<String, Object> s = (Map<String, Object>) o;
                long clockNs = (Long) s.get("vm-clock-sec") * 1_000_000_000L + (Long) s.get("vm-clock-nsec");
                long secs = clockNs / 1_000_000_000L;
                String clock = String.format("%02d:%02d:%02d.%03d", secs / 3600, (secs / 60) % 60, secs % 60,
                        (clockNs / 1_000_000) % 1000);
                Object icount = s.get("icount");
                b.append(String.format("%-9s %-16s %8s%20s%13s%11s", s.get("id"), s.get("name"),
                        QemuOutput.sizeToStr((Long) s.get("vm-state-size")),
                        date.format(Instant.ofEpochSecond((Long) s.get("date-sec"))), clock,
                        icount == null ? "" : icount.toString())).append('\n');
            }
        }
        if (info.containsKey("format-specific")) {
            b.append("Format specific information:\n");
            QemuOutput.human(((Map<String, Object>) info.get("format-specific")).get("data"), 1, b);
        }
    }
}
