package dev.shear.systest.tools;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The process runner itself: capture, exit statuses, messages, and the deadline that kills. */
@RequiresTools({"sh", "sleep"})
class ToolTest {

    @Test
    void runShouldCaptureStdoutStderrAndExitStatus() {
        ToolResult r = Tool.named("sh").run("-c", "echo out; echo err >&2; exit 3");
        assertEquals(new ToolResult(3, "out\n", "err\n"), r);
    }

    @Test
    void checkOfFailingCommandShouldNameCommandAndStderr() {
        ToolException e = assertThrows(ToolException.class,
                () -> Tool.named("sh").check("-c", "echo 'qcow2: it broke' >&2; exit 7"));
        assertTrue(e.getMessage().contains("sh -c echo 'qcow2: it broke' >&2; exit 7"), e.getMessage());
        assertTrue(e.getMessage().contains("exit status: 7"), e.getMessage());
        assertTrue(e.getMessage().contains("qcow2: it broke"), e.getMessage());
        assertEquals(7, e.result().exitCode());
    }

    @Test
    void expectShouldAcceptListedExitStatuses() {
        assertEquals(3, Tool.named("sh").expect(List.of("-c", "exit 3"), 0, 3).exitCode());
    }

    @Test
    void missingProgramShouldFailNamingIt() {
        ToolException e = assertThrows(ToolException.class, () -> Tool.named("no-such-tool-xyzzy").run());
        assertTrue(e.getMessage().contains("cannot start: no-such-tool-xyzzy"), e.getMessage());
    }

    @Test
    @Timeout(value = 20, unit = TimeUnit.SECONDS)
    void commandPastDeadlineShouldBeKilledWithinIt() {
        long start = System.nanoTime();
        ToolTimeoutException e = assertThrows(ToolTimeoutException.class,
                () -> Tool.named("sleep").withTimeout(Duration.ofMillis(300)).run("30"));
        long elapsedMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        assertTrue(elapsedMs < 5000, "took " + elapsedMs + " ms to give up on sleep 30 with a 300 ms deadline");
        assertFalse(ProcessHandle.of(e.pid()).map(ProcessHandle::isAlive).orElse(false), "sleep still alive");
        assertTrue(e.getMessage().contains("timed out after 300 ms"), e.getMessage());
    }

    @Test
    @Timeout(value = 20, unit = TimeUnit.SECONDS)
    void descendantsHoldingOutputPipesShouldBeKilledToo() {
        // sh forks sleep, which inherits stdout: without killing descendants the drain would hang.
        long start = System.nanoTime();
        assertThrows(ToolTimeoutException.class,
                () -> Tool.named("sh").withTimeout(Duration.ofMillis(300)).run("-c", "sleep 30; echo never"));
        long elapsedMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        assertTrue(elapsedMs < 5000, "took " + elapsedMs + " ms");
    }
}
