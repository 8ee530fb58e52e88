package dev.shear.systest.write;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.images.Damage;
import dev.shear.systest.tools.Json;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearCli;
import dev.shear.systest.tools.ToolResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@code shear check -r leaks|all} against {@code qemu-img check -r} on the images damaged by
 * {@link Damage}: where Shear repairs (leaks; refcounts too low; copied flags) it repairs what qemu-img
 * repairs — same exit status, same fixed counts, the same human text on stdout, a clean image after, the
 * same guest content. Where it refuses (damage in the tables themselves: QEMU zeroes entries or rebuilds
 * the refcount structure) it says so, leaves the file byte for byte as it was, and exits as a plain check.
 */
@RequiresTools({"qemu-img", "qemu-io"})
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class CheckRepairDifferentialTest {
    /** Damages Shear repairs; the others are refused. */
    static final List<Damage> REPAIRED = List.of(Damage.LEAKED_CLUSTER, Damage.DOUBLY_REFERENCED_CLUSTER);

    @TempDir
    Path dir;

    private final QemuImg qemuImg = new QemuImg();

    static Stream<Arguments> cases() {
        return Stream.of(Damage.values()).flatMap(d -> Stream.of("leaks", "all").flatMap(mode -> Stream.of(
                Arguments.of(d, 4096L, mode), Arguments.of(d, 65536L, mode))));
    }

    @ParameterizedTest(name = "{0} cluster={1} -r {2}")
    @MethodSource("cases")
    void repairShouldMatchQemuImgOrRefuse(Damage damage, long clusterSize, String mode) throws IOException {
        Path victim = Damage.victim(dir, clusterSize);
        damage.apply(victim);
        Path q = dir.resolve("q.qcow2");
        Path s = dir.resolve("s.qcow2");
        Files.copy(victim, q);
        Files.copy(victim, s);
        String ctx = damage + " cluster=" + clusterSize + " -r " + mode;
        ToolResult qh = qemuImg.tool().expect(List.of("check", "-r", mode, q.toString()), 0, 1, 2, 3);
        ToolResult sh = ShearCli.run("check", "-r", mode, s.toString());
        String both = ctx + "\nqemu-img: exit " + qh.exitCode() + "\n" + qh.stdout() + qh.stderr()
                + "\nshear: exit " + sh.exitCode() + "\n" + sh.stdout() + sh.stderr();
        boolean repairable = REPAIRED.contains(damage);
        if (repairable) {
            assertEquals(qh.exitCode(), sh.exitCode(), both);
            assertEquals(qh.stdout(), sh.stdout(), "human summary: " + both);
            assertEquals(qh.stderr().replace("qemu-img: ", "shear: "), sh.stderr(), "messages: " + both);
            assertTrue(qemuImg.compare(q, "qcow2", s, "qcow2"), both);
            QemuImg.CheckResult after = qemuImg.check(s, "qcow2");
            assertEquals(qemuImg.check(q, "qcow2").exitCode(), after.exitCode(), both);
        } else {
            assertTrue(sh.stderr().contains("shear: cannot repair safely: "), both);
            assertArrayEquals(Files.readAllBytes(victim), Files.readAllBytes(s), "unchanged: " + both);
            assertEquals(damage.qemuCheckExit(), sh.exitCode(), both);
        }
        // JSON: the same counters on fresh copies
        Files.copy(victim, q, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        Files.copy(victim, s, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        ToolResult qj = qemuImg.tool().expect(List.of("check", "-r", mode, "--output=json", q.toString()), 0, 1, 2, 3);
        ToolResult sj = ShearCli.run("check", "-r", mode, "--output=json", s.toString());
        if (repairable) {
            JsonNode a = Json.parse(qj.stdout(), "qemu-img check");
            JsonNode b = Json.parse(sj.stdout(), "shear check");
            for (String key : List.of("corruptions", "leaks", "check-errors", "corruptions-fixed", "leaks-fixed")) {
                assertEquals(a.path(key).asLong(0), b.path(key).asLong(0), key + ": " + both);
            }
        }
    }
}
