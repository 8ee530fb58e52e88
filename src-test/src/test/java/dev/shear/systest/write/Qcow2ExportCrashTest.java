package dev.shear.systest.write;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.shear.block.BlockDevice;
import dev.shear.block.ImageFormat;
import dev.shear.qcow2.Images;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.ToolPaths;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * SIGKILL of the real server under an NBD write load. A python3-libnbd client writes (random data,
 * unaligned ones too, some with FUA), zeroes and trims at QD1 with a flush every few requests, and logs
 * each request before sending it, each FUA acknowledgement and each completed flush. The server is
 * killed (SIGKILL) once the client has logged a seeded number of requests; then {@code qemu-img check}
 * must find no corruption (leaks allowed), and every byte whose last writer was acknowledged before the
 * last completed flush (or acknowledged with FUA) must read back. Several rounds on the same image: each
 * round's server opens the image its predecessor crashed on (with lazy refcounts: a dirty image, which the
 * read-write open repairs).
 *
 * <p>The seed is printed in failures; {@code -Dshear.seed} replays the kill points (the timing of the
 * kill within the server is not replayable).
 */
@RequiresTools({"qemu-img", "python3-libnbd"})
@Timeout(value = 240, unit = TimeUnit.SECONDS)
class Qcow2ExportCrashTest {
    static final int SIZE = 64 << 20;
    static final int ROUNDS = 6;

    /** Request kinds in the client's log: I seq kind off len (before sending), A seq (FUA acked), F seq. */
    static final String LOAD = String.join("\n",
            "import sys, struct, random",
            "import nbd",
            "uri, seed, size, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]",
            "r = random.Random(seed)",
            "out = open(log, 'w', buffering=1)",
            "h = nbd.NBD()",
            "h.connect_uri(uri)",
            "seq = 0",
            "try:",
            "    while True:",
            "        seq += 1",
            "        k = r.random()",
            "        if r.random() < 0.25:",
            "            ln = r.randint(1, 200000); off = r.randrange(0, size - ln)",
            "        else:",
            "            ln = 512 * r.randint(1, 512); off = 512 * r.randrange(0, (size - ln) // 512)",
            "        if k < 0.75:",
            "            fua = r.random() < 0.1",
            "            out.write('I %d %s %d %d\\n' % (seq, 'f' if fua else 'w', off, ln))",
            "            key = (seq * 0x9E3779B97F4A7C15 + 0x1234567) & 0xffffffffffffffff",
            "            buf = (struct.pack('<Q', key) * (ln // 8 + 2))",
            "            s = off % 8",
            "            h.pwrite(buf[s:s + ln], off, nbd.CMD_FLAG_FUA if fua else 0)",
            "            if fua:",
            "                out.write('A %d\\n' % seq)",
            "        elif k < 0.9:",
            "            out.write('I %d z %d %d\\n' % (seq, off, ln))",
            "            h.zero(ln, off)",
            "        else:",
            "            out.write('I %d t %d %d\\n' % (seq, off, ln))",
            "            h.trim(ln, off)",
            "        if seq % 16 == 0:",
            "            h.flush()",
            "            out.write('F %d\\n' % seq)",
            "except nbd.Error as e:",
            "    out.write('E %s\\n' % e)",
            "");

    private final List<Process> started = new ArrayList<>();

    @AfterEach
    void killLeftovers() {
        for (Process p : started) {
            p.destroyForcibly();
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"", "lazy_refcounts=on", "cluster_size=4096"})
    void sigkillUnderWriteLoadShouldKeepFlushedWritesAndCheckWithoutCorruption(String options,
            @org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        long seed = Long.getLong("shear.seed", System.nanoTime());
        SplittableRandom random = new SplittableRandom(seed);
        QemuImg qemuImg = new QemuImg();
        Path img = dir.resolve("crash.qcow2");
        if (options.isEmpty()) {
            qemuImg.create(img, "qcow2", SIZE);
        } else {
            qemuImg.create(img, "qcow2", SIZE, options);
        }
        Path script = dir.resolve("load.py");
        Files.writeString(script, LOAD);
        byte[] model = new byte[SIZE];
        BitSet known = new BitSet(SIZE);
        known.set(0, SIZE);   // a new image reads as zeros
        Path python = ToolPaths.python3WithLibnbd().orElseThrow();
        for (int round = 0; round < ROUNDS; round++) {
            String ctx = "options=" + options + " seed=" + seed + " round=" + round;
            int killAfter = 20 + random.nextInt(400);
            Path log = dir.resolve("load-" + round + ".log");
            ShearProcess server = ShearProcess.serve(dir.resolve("s" + round + ".sock"), "d", img);
            Process load;
            try {
                load = new ProcessBuilder(python.toString(), script.toString(), server.uri(),
                        Long.toString(seed + round), Integer.toString(SIZE), log.toString())
                        .redirectErrorStream(true).redirectOutput(dir.resolve("load-" + round + ".out").toFile())
                        .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
                started.add(load);
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                while (countRequests(log) < killAfter) {
                    if (System.nanoTime() > deadline || load.waitFor(10, TimeUnit.MILLISECONDS)) {
                        fail(ctx + ": load stopped before " + killAfter + " requests; log:\n" + tail(log)
                                + "\nserver:\n" + server.stderr());
                    }
                }
                ProcessHandle.of(server.pid()).orElseThrow().destroyForcibly();   // SIGKILL
                server.awaitExit(java.time.Duration.ofSeconds(10));
            } finally {
                server.close();
            }
            assertTrue(load.waitFor(30, TimeUnit.SECONDS), ctx + ": client did not notice the kill");
            int flushes = apply(Files.readAllLines(log), model, known);
            assertTrue(flushes > 0, ctx + ": no flush completed before the kill; log:\n" + tail(log));

            if (options.contains("lazy_refcounts")) {
                // The next read-write open repairs a dirty image (QEMU does so too); check after that.
                try (BlockDevice d = Images.open(img, ImageFormat.QCOW2, false, null)) {
                    d.flush();
                }
            }
            QemuImg.CheckResult check = qemuImg.check(img, "qcow2");
            assertTrue(check.exitCode() == QemuImg.CHECK_CLEAN || check.exitCode() == QemuImg.CHECK_LEAKS,
                    ctx + ": qemu-img check exit " + check.exitCode() + "\n" + check.raw().stdout()
                            + check.raw().stderr());
            assertEquals(0, check.count("corruptions"), ctx + ": " + check.raw().stdout());
            Path raw = dir.resolve("after.raw");
            Files.deleteIfExists(raw);
            qemuImg.convertToRaw(img, "qcow2", raw);
            byte[] disk = Files.readAllBytes(raw);
            for (int i = known.nextSetBit(0); i >= 0; i = known.nextSetBit(i + 1)) {
                if (disk[i] != model[i]) {
                    fail(ctx + ": byte " + i + " reads " + (disk[i] & 0xff) + ", expected " + (model[i] & 0xff)
                            + " (acknowledged before the last completed flush, " + flushes + " flushes in the round)");
                }
            }
        }
    }

    /** Requests the client logged so far. */
    static int countRequests(Path log) throws IOException {
        if (!Files.exists(log)) {
            return 0;
        }
        int n = 0;
        for (String l : Files.readAllLines(log)) {
            if (l.startsWith("I ")) {
                n++;
            }
        }
        return n;
    }

    private static String tail(Path log) throws IOException {
        if (!Files.exists(log)) {
            return "(none)";
        }
        List<String> l = Files.readAllLines(log);
        return String.join("\n", l.subList(Math.max(0, l.size() - 5), l.size()));
    }

    /**
     * Replays one round's log onto the model: a request is durable if a flush completed after it or it
     * was an acknowledged FUA write; durable requests set their bytes (known), all others make their
     * bytes unknown (they may or may not have landed). Returns the number of completed flushes.
     */
    static int apply(List<String> lines, byte[] model, BitSet known) {
        long lastFlush = 0;
        Set<Long> fuaAcked = new HashSet<>();
        int flushes = 0;
        for (String l : lines) {
            String[] w = l.split(" ");
            if (w[0].equals("F")) {
                lastFlush = Long.parseLong(w[1]);
                flushes++;
            } else if (w[0].equals("A")) {
                fuaAcked.add(Long.parseLong(w[1]));
            }
        }
        for (String l : lines) {
            String[] w = l.split(" ");
            if (!w[0].equals("I") || w.length < 5) {
                continue;
            }
            long seq = Long.parseLong(w[1]);
            String kind = w[2];
            int off = Integer.parseInt(w[3]);
            int len = Integer.parseInt(w[4]);
            boolean durable = seq <= lastFlush || fuaAcked.contains(seq);
            if (!durable || kind.equals("t")) {
                known.clear(off, off + len);   // a trim's contents are undefined: any later read is fine
                continue;
            }
            if (kind.equals("z")) {
                java.util.Arrays.fill(model, off, off + len, (byte) 0);
            } else {
                long key = seq * 0x9E3779B97F4A7C15L + 0x1234567L;
                for (int i = off; i < off + len; i++) {
                    model[i] = (byte) (key >>> (8 * (i % 8)));
                }
            }
            known.set(off, off + len);
        }
        return flushes;
    }
}
