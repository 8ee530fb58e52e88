package dev.shear.systest.nbd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.tools.Json;
import dev.shear.systest.tools.Nbdsh;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import dev.shear.systest.tools.QemuNbd;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.ToolRequirement;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Exact protocol behaviour through python3-libnbd, where the command-line clients hide it: the chunks of
 * a structured read over holes, block status with REQ_ONE and with two contexts in one request, meta
 * context list queries, the advertised flags, FUA writes and FAST_ZERO. Each script prints one JSON
 * object; the assertions are here.
 */
@RequiresTools({"qemu-img", "qemu-io", "qemu-nbd", ToolRequirement.PYTHON_LIBNBD})
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class NbdshInteropTest {
    static final int KIB = 1024;

    /** Connects h to argv[1] with both contexts requested; the snippet follows. */
    static final String PRELUDE = String.join("\n",
            "import sys, json, nbd",
            "h = nbd.NBD()",
            "h.add_meta_context('base:allocation')",
            "h.add_meta_context('qemu:allocation-depth')",
            "h.connect_uri(sys.argv[1])",
            "out = {}",
            "");

    @TempDir
    Path dir;

    private final List<AutoCloseable> servers = new ArrayList<>();
    private final Nbdsh nbdsh = new Nbdsh();
    private Path image;

    /** 4 MiB qcow2, 64 KiB clusters: data [0, 64K), hole [64K, 128K), data [128K, 192K), zero cluster. */
    @BeforeEach
    void makeImage() {
        image = dir.resolve("disk.qcow2");
        new QemuImg().create(image, "qcow2", 4L << 20);
        new QemuIo().run(image, "qcow2", List.of(QemuIo.write(0x61, 0, 64 * KIB),
                QemuIo.write(0x62, 128 * KIB, 64 * KIB), QemuIo.writeZeroes(256 * KIB, 64 * KIB, false)));
    }

    @AfterEach
    void stopServers() throws Exception {
        for (AutoCloseable s : servers) {
            s.close();
        }
    }

    private String shear(Path img, String... args) {
        ShearProcess s = ShearProcess.serve(dir.resolve("shear-" + servers.size() + ".sock"), "disk", img, args);
        servers.add(s);
        return s.uri();
    }

    private String qemu(Path img, String format, String... args) {
        QemuNbd q = QemuNbd.start(dir, img, format, "disk", List.of(args));
        servers.add(q);
        return q.uri();
    }

    private JsonNode run(String uri, String snippet) {
        String out = nbdsh.script(PRELUDE + snippet + "\nh.shutdown()\nprint(json.dumps(out))\n", uri).stdout();
        return Json.parse(out, "nbdsh script on " + uri);
    }

    @Test
    void structuredReadOverHolesShouldSendDataAndHoleChunksThatTileTheRange() {
        String uri = shear(image, "-r", "--allocation-depth");
        JsonNode r = run(uri, String.join("\n",
                "chunks = []",
                "def cb(buf, off, status, err):",
                "    chunks.append([off, len(buf), status, len(set(buf)) == 1 and buf[0] or -1])",
                "    return 0",
                "h.pread_structured(320 * 1024, 0, cb)",
                "chunks.sort()",
                "out['chunks'] = chunks",
                "df = []",
                "h.pread_structured(320 * 1024, 0, lambda b, o, s, e: df.append([o, len(b), s]) or 0,",
                "                   nbd.CMD_FLAG_DF)",
                "out['df'] = df"));
        long pos = 0;
        boolean hole = false;
        for (JsonNode c : r.get("chunks")) {
            assertEquals(pos, c.get(0).asLong(), "chunks must tile the read without gaps or overlap: " + r);
            pos += c.get(1).asLong();
            if (c.get(2).asInt() == 2) {    // LIBNBD_READ_HOLE
                hole = true;
            } else {
                long start = c.get(0).asLong();
                int expected = start < 64 * KIB ? 0x61 : start >= 128 * KIB && start < 192 * KIB ? 0x62 : 0;
                assertEquals(expected, c.get(3).asInt(), "data chunk content at " + start + ": " + r);
            }
        }
        assertEquals(320 * KIB, pos, r.toString());
        assertTrue(hole, "the unallocated cluster should come as a hole chunk: " + r);
        assertEquals(1, r.get("df").size(), "DF: one data chunk: " + r);
        assertEquals(1, r.get("df").get(0).get(2).asInt(), "DF chunk is data: " + r);
    }

    @Test
    void blockStatusWithTwoContextsShouldCoverTheSameRangeNeverPastTheRequestEnd() {
        String uri = shear(image, "-r", "--allocation-depth");
        JsonNode r = run(uri, String.join("\n",
                "def status(count, off, flags=0):",
                "    got = {}",
                "    def cb(ctx, o, entries, err):",
                "        got[ctx] = [o, sum(entries[0::2]), len(entries) // 2, entries]",
                "        return 0",
                "    h.block_status(count, off, cb, flags)",
                "    return got",
                "out['plain'] = status(200 * 1024, 10 * 1024)",
                "out['one'] = status(200 * 1024, 10 * 1024, nbd.CMD_FLAG_REQ_ONE)",
                "out['tail'] = status(4096, (4 << 20) - 4096)",
                "out['short'] = status(1000, 10 * 1024 + 7)"));
        for (String k : List.of("plain", "one", "tail", "short")) {
            JsonNode base = r.get(k).get("base:allocation");
            JsonNode depth = r.get(k).get("qemu:allocation-depth");
            assertEquals(base.get(0), depth.get(0), k + ": both chunks start at the request offset: " + r);
            assertEquals(base.get(1), depth.get(1), k + ": both contexts cover exactly the same range: " + r);
        }
        assertTrue(r.get("plain").get("base:allocation").get(1).asLong() <= 200 * KIB, "past request end: " + r);
        assertEquals(1, r.get("one").get("base:allocation").get(2).asInt(), "REQ_ONE: one extent: " + r);
        assertEquals(1, r.get("one").get("qemu:allocation-depth").get(2).asInt(), "REQ_ONE: one extent: " + r);
        assertEquals(54 * KIB, r.get("one").get("base:allocation").get(1).asLong(),
                "REQ_ONE: the first extent, data [10K, 64K): " + r);
        assertEquals(4096, r.get("tail").get("base:allocation").get(1).asLong(), "last 4 KiB: " + r);
        assertEquals(1000, r.get("short").get("base:allocation").get(1).asLong(),
                "an extent running on must be clipped at the request end: " + r);
    }

    /** {@code LIST_META_CONTEXT} with queries, in opt mode; run against a server. */
    private JsonNode listContexts(String uri) {
        String script = String.join("\n",
                "import sys, json, nbd",
                "out = {}",
                "for q in ['qemu:', 'qemu:dirty-bitmap:', 'base:', 'nosuch:']:",
                "    h = nbd.NBD()",
                "    h.set_opt_mode(True)",
                "    h.add_meta_context(q)",
                "    h.connect_uri(sys.argv[1])",
                "    names = []",
                "    h.opt_list_meta_context(lambda n: names.append(n) or 0)",
                "    out[q] = sorted(names)",
                "    h.opt_abort()",
                "h = nbd.NBD()",
                "h.add_meta_context('qemu:allocation-depth')",
                "h.add_meta_context('nosuch:context')",
                "h.connect_uri(sys.argv[1])",
                "out['set'] = [h.can_meta_context('qemu:allocation-depth'), h.can_meta_context('nosuch:context'),",
                "              h.can_meta_context('base:allocation')]",
                "h.shutdown()",
                "print(json.dumps(out))");
        return Json.parse(nbdsh.script(script, uri).stdout(), "list meta contexts " + uri);
    }

    @Test
    void metaContextQueriesShouldListWhatQemuNbdLists() {
        JsonNode s = listContexts(shear(image, "-r", "--allocation-depth"));
        JsonNode q = listContexts(qemu(image, "qcow2", "--read-only", "--allocation-depth"));
        assertEquals(q, s, "LIST/SET_META_CONTEXT answers, qemu-nbd vs shear");
        assertEquals("[\"qemu:allocation-depth\"]", s.get("qemu:").toString(), s.toString());
        assertEquals(0, s.get("qemu:dirty-bitmap:").size(), "no bitmap exported: " + s);
    }

    private static final String FLAGS = String.join("\n",
            "for f in ['is_read_only', 'can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_fast_zero', 'can_df',",
            "          'can_cache', 'can_multi_conn', 'is_rotational']:",
            "    out[f] = getattr(h, f)()",
            "out['structured'] = h.get_structured_replies_negotiated()",
            "out['size'] = h.get_size()",
            "");

    @Test
    void advertisedFlagsShouldBeConsistentAndWorkAsAdvertised() throws IOException {
        Path raw = dir.resolve("disk.raw");
        new QemuImg().create(raw, "raw", 1L << 20);
        JsonNode r = run(shear(raw, "-f", "raw"), FLAGS + String.join("\n",
                "h.pwrite(b'\\xa5' * 4096, 8192, nbd.CMD_FLAG_FUA)",
                "out['fua_read'] = h.pread(4096, 8192) == b'\\xa5' * 4096",
                "h.pwrite(b'\\x5a' * 4096, 16384)",
                "h.flush()",
                "h.zero(4096, 16384, nbd.CMD_FLAG_FUA)",
                "try:",
                "    h.zero(4096, 8192, nbd.CMD_FLAG_FAST_ZERO)",
                "    out['fast_zero'] = 'ok'",
                "except nbd.Error as e:",
                "    out['fast_zero'] = 'errno=%s' % e.errno",
                "out['after_fast_zero'] = h.pread(1, 8192)[0]"));
        assertTrue(!r.get("is_read_only").asBoolean() && r.get("can_flush").asBoolean()
                && r.get("can_fua").asBoolean() && r.get("can_zero").asBoolean() && r.get("can_df").asBoolean()
                && r.get("structured").asBoolean(), "writable raw export flags: " + r);
        assertTrue(r.get("fua_read").asBoolean(), r.toString());
        byte[] f = Files.readAllBytes(raw);
        assertEquals((byte) 0xa5, f[8192 + 4095], "FUA write reached the file");
        assertEquals(0, f[16384], "zero with FUA reached the file");
        String fz = r.get("fast_zero").asText();
        if (r.get("can_fast_zero").asBoolean()) {
            // FAST_ZERO: either done fast, or refused with ENOTSUP (95) and nothing written.
            assertTrue(fz.equals("ok") && r.get("after_fast_zero").asInt() == 0
                    || fz.equals("errno=95") && r.get("after_fast_zero").asInt() == 0xa5, r.toString());
        } else {
            // libnbd refuses the flag itself when the server did not advertise it; nothing was sent.
            assertTrue(fz.startsWith("errno="), r.toString());
            assertEquals(0xa5, r.get("after_fast_zero").asInt(), r.toString());
        }
        JsonNode ro = run(shear(image, "-r"), FLAGS);
        assertTrue(ro.get("is_read_only").asBoolean() && !ro.get("can_zero").asBoolean()
                && !ro.get("can_trim").asBoolean() && !ro.get("can_fast_zero").asBoolean(), ro.toString());
    }
}
