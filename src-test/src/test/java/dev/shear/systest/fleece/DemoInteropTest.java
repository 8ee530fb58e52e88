package dev.shear.systest.fleece;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.Tool;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** {@code shear demo}: starts, its snapshot URI reads with nbdcopy, SIGINT ends it cleanly. */
@RequiresTools({"nbdcopy", "kill"})
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class DemoInteropTest {
    @TempDir
    Path dir;

    @Test
    void demoShouldServeTheSnapshotAndStopCleanlyOnSigint() throws IOException {
        try (ShearProcess demo = ShearProcess.start(List.of("demo", "--dir", dir.toString(), "--size", "16M",
                "--write-interval", "20"))) {
            String snapshot = demo.uri();
            assertTrue(snapshot.startsWith("nbd+unix:///demo-backup?socket="), snapshot);
            for (String line = demo.nextLine(Duration.ofSeconds(10)); !line.startsWith("Ctrl-C");
                    line = demo.nextLine(Duration.ofSeconds(10))) {
                // the commands to paste
            }
            assertEquals(1, scratchFiles(), "a scratch file while the backup runs");
            Path copy = dir.resolve("copy.raw");
            Tool.named("nbdcopy").check(snapshot, copy.toString());
            assertEquals(16L << 20, Files.size(copy));
            Tool.named("kill").check("-INT", Long.toString(demo.pid()));
            assertEquals(0, demo.awaitExit(Duration.ofSeconds(30)), demo.stderr());
            assertEquals(0, scratchFiles(), "scratch deleted");
        }
    }

    private long scratchFiles() throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().startsWith("shear-")).count();
        }
    }
}
