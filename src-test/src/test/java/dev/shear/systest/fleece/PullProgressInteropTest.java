package dev.shear.systest.fleece;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.Tool;
import java.io.IOException;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Pull-backup progress with a client that skips what block status calls zero: nbdcopy reads only the
 * data extents of a snapshot with holes and zero clusters, and the job still reaches 100 % and emits
 * "read-complete" (ranges reported as zeros count as done; PullBackupJob).
 */
@RequiresTools({"qemu-img", "qemu-io", "nbdcopy", "curl"})
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class PullProgressInteropTest {
    private static final int KIB = 1024;
    private static final int MIB = 1024 * KIB;
    private static final int SIZE = 8 * MIB;
    /** Bytes of data in the disk: [0, 1M) and [5M, 5.5M); [2M, 3M) is zero clusters, the rest holes. */
    private static final long DATA = MIB + 512 * KIB;

    @TempDir
    Path dir;
    private Path image;
    private Path nbd;
    private ShearProcess server;
    private ControlClient api;

    @BeforeEach
    void start() {
        image = dir.resolve("disk.qcow2");
        new QemuImg().create(image, "qcow2", SIZE);
        Tool qemuIo = Tool.named("qemu-io");
        qemuIo.check("-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 2M 1M", "-c", "write -z 2M 1M",
                "-c", "write -P 0x33 5M 512k", image.toString());
        nbd = dir.resolve("nbd.sock");
        Path ctl = dir.resolve("ctl.sock");
        server = ControlClient.serve(nbd, "vda", image, ctl);
        api = new ControlClient(ctl, server);
    }

    @AfterEach
    void stop() {
        if (server != null) {
            server.close();
        }
    }

    @Test
    void nbdcopySkippingZeroExtentsShouldStillCompleteTheProgress() throws IOException {
        try (ControlClient.Events events = api.events()) {
            JsonNode job = api.ok("POST", "/backups", "{\"export\":\"vda\"}");
            String id = job.get("id").asText();
            assertEquals(SIZE, job.get("progress").get("totalBytes").asLong());
            Path copy = dir.resolve("copy.raw");
            Tool.named("nbdcopy").check("nbd+unix:///vda-backup?socket=" + nbd, copy.toString());
            assertTrue(new QemuImg().compare(copy, "raw", image, "qcow2"), "the copy equals the disk");
            // The client skipped the holes and zero clusters: it read about the data only...
            long read = readBytes(api.curl("GET", "/metrics", null)[1]);
            assertTrue(read >= DATA && read < SIZE - MIB, "bytes read over NBD: " + read);
            // ...and the job counts the rest as done because block status told the client so.
            JsonNode status = api.ok("GET", "/jobs/" + id, null);
            assertEquals(SIZE, status.get("progress").get("doneBytes").asLong(), status.toString());
            assertEquals(0, status.get("progress").get("etaSeconds").asLong(), status.toString());
            assertTrue(events.await("\"type\":\"read-complete\""), events.text());
            assertTrue(events.text().contains("\"job\":\"" + id + "\""), events.text());
            api.ok("DELETE", "/backups/" + id, null);
        }
    }

    private static long readBytes(String metrics) {
        Matcher m = Pattern.compile("(?m)^shear_nbd_bytes_total\\{command=\"read\"} (\\d+)$").matcher(metrics);
        assertTrue(m.find(), metrics);
        return Long.parseLong(m.group(1));
    }
}
