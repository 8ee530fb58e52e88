package dev.shear.cli;

import dev.shear.block.BlockDevice;
import dev.shear.block.ImageFormat;
import dev.shear.fleece.job.ManagedDisk;
import dev.shear.nbd.control.BackupService;
import dev.shear.nbd.control.ControlServer;
import dev.shear.nbd.server.DirtyBitmapSource;
import dev.shear.nbd.server.Export;
import dev.shear.nbd.server.ExportRegistry;
import dev.shear.nbd.server.NbdServer;
import dev.shear.nbd.server.NbdServerConfig;
import dev.shear.nbd.server.ServerLog;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2CreateOptions;
import dev.shear.qcow2.Qcow2Creator;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code shear demo}: a generated qcow2 disk served live with a background writer and a pull backup
 * under way, with the commands to try printed. The disk gets checkpoint {@code demo-c1} at creation,
 * then random data (and some zeroed ranges) on every cluster, so the backup "since demo-c1" covers the
 * whole disk and any client can read it all; the writer keeps changing the live disk, which the
 * snapshot never shows. The first stdout line is the snapshot export's URI. Ctrl-C (or SIGTERM) ends
 * the backup (its scratch file is deleted), stops the server and removes a generated directory.
 */
@Command(name = "demo", mixinStandardHelpOptions = true, sortOptions = false,
        description = "Serve a generated disk with a background writer and a pull backup under way.")
public final class DemoCommand implements java.util.concurrent.Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--dir", paramLabel = "DIR", description = "Where the disk and sockets go (default: a new "
            + "temporary directory, removed at exit).")
    Path dir;

    @Option(names = "--size", paramLabel = "SIZE", description = "Disk size (default 64M).")
    String size = "64M";

    @Option(names = "--seed", paramLabel = "N", description = "Random seed (default 1).")
    long seed = 1;

    @Option(names = "--write-interval", paramLabel = "MS", description = "Background writer pause (default 200).")
    long writeIntervalMillis = 200;

    @Override
    public Integer call() throws Exception {
        boolean temp = dir == null;
        Path work = temp ? Files.createTempDirectory("shear-demo-") : Files.createDirectories(dir);
        long sizeBytes = Qcow2CreateOptions.parseSize(size);
        Path image = work.resolve("demo.qcow2");
        Files.deleteIfExists(image);
        Qcow2Creator.create(image, Qcow2CreateOptions.defaults(sizeBytes));
        BlockDevice device = Images.open(image, ImageFormat.QCOW2, false, null);
        Map<String, ManagedDisk> managed = new java.util.LinkedHashMap<>();
        Export live = BackupService.manage(new Export("demo", "shear demo disk", device, false, false,
                DirtyBitmapSource.NONE, true), List.of(), managed);
        ManagedDisk disk = managed.get("demo");
        disk.checkpoints().create("demo-c1", "the demo disk as created (empty)");
        fill(disk.top(), sizeBytes);
        Path nbd = work.resolve("nbd.sock");
        Path ctl = work.resolve("ctl.sock");
        ExportRegistry registry = new ExportRegistry(List.of(live));
        NbdServer server = new NbdServer(NbdServerConfig.unix(nbd).withMaxConnections(64), registry);
        server.start();
        BackupService service = new BackupService(registry, work, nbd.toString());
        service.addDisks(managed);
        ControlServer control = new ControlServer(ctl, service).start();
        Map<String, Object> job = service.beginPull("demo", "demo-c1", "demo-c2");
        AtomicBoolean stop = new AtomicBoolean();
        Thread writer = new Thread(() -> writeLoop(disk.top(), sizeBytes, stop), "shear-demo-writer");
        writer.setDaemon(true);
        writer.start();

        String snap = "nbd+unix:///demo-backup?socket=" + nbd;
        String liveUri = "nbd+unix:///demo?socket=" + nbd;
        PrintWriter out = spec.commandLine().getOut();
        out.println(snap);
        out.println();
        out.println("shear demo: " + image + " (" + size + " qcow2), checkpoint demo-c1, background writer on");
        out.println("  live export:      " + liveUri);
        out.println("  snapshot export:  " + snap + "   (backup " + job.get("id") + ", since demo-c1)");
        out.println("  dirty bitmap:     qemu:dirty-bitmap:backup-demo");
        out.println("  control socket:   " + ctl);
        out.println();
        out.println("Try:");
        out.println("  nbdinfo --map=qemu:dirty-bitmap:backup-demo '" + snap + "'");
        out.println("  nbdinfo --map '" + snap + "'");
        out.println("  nbdcopy --progress '" + snap + "' backup.raw");
        out.println("  qemu-img convert -p -O qcow2 '" + snap + "' backup.qcow2");
        out.println("  qemu-img map --output=json --image-opts driver=nbd,server.type=unix,server.path=" + nbd
                + ",export=demo-backup,x-dirty-bitmap=qemu:dirty-bitmap:backup-demo");
        out.println("  shear ctl --control " + ctl + " jobs --human");
        out.println();
        out.println("Ctrl-C ends the backup and stops.");
        out.flush();

        CountDownLatch done = new CountDownLatch(1);
        Runnable shutdown = () -> {
            stop.set(true);
            try {
                writer.join(5_000);
                service.endAll();
                control.close();
                server.shutdown();
                if (temp) {
                    deleteTree(work);
                } else {
                    Files.deleteIfExists(nbd);
                }
            } catch (IOException | InterruptedException e) {
                ServerLog.warn("demo-stop", "message", e.getMessage());
            } finally {
                done.countDown();
            }
        };
        for (String s : new String[] {"INT", "TERM"}) {
            sun.misc.Signal.handle(new sun.misc.Signal(s), sig -> new Thread(shutdown, "shear-demo-stop").start());
        }
        done.await();
        return ShearMain.EXIT_OK;
    }

    /** Random data on every cluster, with every eighth 1 MiB range written as zeros. */
    private void fill(BlockDevice d, long sizeBytes) throws IOException {
        SplittableRandom r = new SplittableRandom(seed);
        byte[] b = new byte[1 << 20];
        for (long off = 0; off < sizeBytes; off += b.length) {
            int n = (int) Math.min(b.length, sizeBytes - off);
            if ((off >> 20) % 8 == 3) {
                d.writeZeroes(off, n, 0);
            } else {
                r.nextBytes(b);
                d.write(off, ByteBuffer.wrap(b, 0, n), 0);
            }
        }
        d.flush();
    }

    private void writeLoop(BlockDevice d, long sizeBytes, AtomicBoolean stop) {
        SplittableRandom r = new SplittableRandom(seed + 1);
        byte[] b = new byte[64 * 1024];
        long blocks = sizeBytes / b.length;
        while (!stop.get() && blocks > 0) {
            r.nextBytes(b);
            try {
                d.write(r.nextLong(blocks) * b.length, ByteBuffer.wrap(b), 0);
                Thread.sleep(writeIntervalMillis);
            } catch (IOException e) {
                return;   // the server is stopping
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    private static void deleteTree(Path p) throws IOException {
        try (Stream<Path> s = Files.walk(p)) {
            for (Path q : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(q);
            }
        }
    }
}
