package dev.shear.systest.tools;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.systest.tools.ToolRequirement.Decision;
import dev.shear.systest.tools.ToolRequirement.Verdict;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Predicate;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The skip-or-fail decision, without any tool installed: tools and environment are injected. */
class ToolRequirementTest {
    private static final Predicate<String> ONLY_QEMU_IMG = Set.of("qemu-img")::contains;

    @Test
    void allToolsPresentShouldRun() {
        Decision d = ToolRequirement.decide(List.of("qemu-img"), ONLY_QEMU_IMG, Map.of("CI", "true"), false, "x");
        assertEquals(Verdict.RUN, d.verdict());
        assertEquals(List.of(), d.missing());
    }

    @Test
    void missingToolOutsideCiShouldSkipNamingTheTool() {
        Decision d = ToolRequirement.decide(List.of("qemu-img", "nbdinfo"), ONLY_QEMU_IMG, Map.of(), false,
                "class MapDifferentialTest");
        assertEquals(Verdict.SKIP, d.verdict());
        assertEquals(List.of("nbdinfo"), d.missing());
        assertTrue(d.message().contains("class MapDifferentialTest requires nbdinfo"), d.message());
        assertTrue(d.message().contains("SHEAR_REQUIRE_TOOLS=true"), d.message());
    }

    @Test
    void missingToolOnCiShouldFail() {
        Decision d = ToolRequirement.decide(List.of("nbdcopy"), ONLY_QEMU_IMG, Map.of("CI", "true"), false, "x");
        assertEquals(Verdict.FAIL, d.verdict());
        assertTrue(d.message().contains("requires nbdcopy"), d.message());
        assertTrue(d.message().contains("failing"), d.message());
    }

    @Test
    void missingToolWithShearRequireToolsShouldFail() {
        Decision d = ToolRequirement.decide(List.of("nbdcopy"), ONLY_QEMU_IMG,
                Map.of("SHEAR_REQUIRE_TOOLS", "TRUE", "CI", "false"), false, "x");
        assertEquals(Verdict.FAIL, d.verdict());
    }

    @Test
    void missingToolWithSystemPropertyShouldFail() {
        Decision d = ToolRequirement.decide(List.of("nbdcopy"), ONLY_QEMU_IMG, Map.of(), true, "x");
        assertEquals(Verdict.FAIL, d.verdict());
    }

    @Test
    void missingPythonLibnbdShouldExplainWhatItMeans() {
        Decision d = ToolRequirement.decide(List.of(ToolRequirement.PYTHON_LIBNBD), ONLY_QEMU_IMG, Map.of(), false,
                "x");
        assertEquals(Verdict.SKIP, d.verdict());
        assertTrue(d.message().contains("'import nbd'"), d.message());
    }

    @Test
    void everyMissingToolShouldBeListedOnce() {
        Decision d = ToolRequirement.decide(List.of("a", "b", "a", "qemu-img"), ONLY_QEMU_IMG, Map.of(), false, "x");
        assertEquals(List.of("a", "b"), d.missing());
    }

    @ParameterizedTest
    @CsvSource({"true, true", "TRUE, true", "1, true", "yes, true", "false, false", "'', false",
        "'${env.CI}', false"})
    void ciVariableShouldBeStrictOnlyWhenTruthy(String value, boolean strict) {
        assertEquals(strict, ToolRequirement.isStrict(Map.of("CI", value)));
        assertEquals(strict, ToolRequirement.isStrict(Map.of("SHEAR_REQUIRE_TOOLS", value)));
    }

    @Test
    void noVariablesShouldNotBeStrict() {
        assertFalse(ToolRequirement.isStrict(Map.of()));
    }

    @Test
    void toolLookupShouldFindShAndNotNonsense() {
        assertTrue(ToolPaths.isAvailable("sh"));
        assertFalse(ToolPaths.isAvailable("no-such-tool-xyzzy"));
    }
}
