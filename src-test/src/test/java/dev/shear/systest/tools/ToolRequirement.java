package dev.shear.systest.tools;

import java.lang.reflect.AnnotatedElement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.function.Predicate;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ConditionEvaluationResult;
import org.junit.jupiter.api.extension.ExecutionCondition;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.platform.commons.support.AnnotationSupport;
import org.opentest4j.AssertionFailedError;
import org.opentest4j.TestAbortedException;

/**
 * Enforces {@link RequiresTools}: before a class (its {@code @BeforeAll} methods included) and before
 * each annotated method, looks the tools up; if some are missing the test is
 * <ul>
 *   <li>FAILED when {@code CI=true} or {@code SHEAR_REQUIRE_TOOLS=true} (case-insensitive; also the
 *       system property {@code shear.requireTools=true}): a CI machine without qemu must not go green;</li>
 *   <li>SKIPPED (a JUnit assumption) otherwise, so a laptop without qemu still runs the rest.</li>
 * </ul>
 * The decision is the pure function {@link #decide}, unit-tested without any tool installed.
 */
public final class ToolRequirement implements ExecutionCondition, BeforeAllCallback, BeforeEachCallback {
    /** The pseudo tool name for "python3 with libnbd's bindings" (Debian package python3-libnbd). */
    public static final String PYTHON_LIBNBD = "python3-libnbd";

    /** What to do with a test. */
    public enum Verdict { RUN, SKIP, FAIL }

    /** A verdict, the missing tools and the message shown in the report. */
    public record Decision(Verdict verdict, List<String> missing, String message) {
    }

    /**
     * Skips as a disabled container/test (reported as skipped with the reason, and no {@code @BeforeAll}
     * runs); the failing verdict is left to the callbacks below, since a condition can only disable.
     */
    @Override
    public ConditionEvaluationResult evaluateExecutionCondition(ExtensionContext context) {
        Optional<AnnotatedElement> element = context.getElement();
        if (element.isEmpty()) {
            return ConditionEvaluationResult.enabled("no element");
        }
        Decision d = decision(element.get(), context.getDisplayName());
        return d != null && d.verdict() == Verdict.SKIP
                ? ConditionEvaluationResult.disabled(d.message())
                : ConditionEvaluationResult.enabled(d == null ? "no @RequiresTools" : d.message());
    }

    @Override
    public void beforeAll(ExtensionContext context) {
        context.getTestClass().ifPresent(c -> enforce(c, "class " + c.getSimpleName()));
    }

    @Override
    public void beforeEach(ExtensionContext context) {
        context.getTestMethod().ifPresent(m -> enforce(m, "method " + m.getName()));
    }

    private static Decision decision(AnnotatedElement element, String where) {
        Optional<RequiresTools> ann = AnnotationSupport.findAnnotation(element, RequiresTools.class);
        if (ann.isEmpty()) {
            return null;
        }
        return decide(Arrays.asList(ann.get().value()), ToolPaths::isAvailable, System.getenv(),
                Boolean.getBoolean("shear.requireTools"), where);
    }

    private static void enforce(AnnotatedElement element, String where) {
        Decision d = decision(element, where);
        if (d == null) {
            return;
        }
        switch (d.verdict()) {
            case RUN -> { }
            case SKIP -> throw new TestAbortedException(d.message());
            case FAIL -> throw new AssertionFailedError(d.message());
            default -> throw new IllegalStateException("verdict: " + d.verdict());
        }
    }

    /**
     * Decides what happens to a test that needs {@code required}.
     *
     * @param available    answers whether one tool is usable
     * @param env          the environment (reads CI and SHEAR_REQUIRE_TOOLS)
     * @param forcedStrict true when a system property demands the tools
     * @param where        names the test in the message
     */
    public static Decision decide(Collection<String> required, Predicate<String> available,
            Map<String, String> env, boolean forcedStrict, String where) {
        List<String> missing = new ArrayList<>();
        for (String tool : new LinkedHashSet<>(required)) {
            if (!available.test(tool)) {
                missing.add(tool);
            }
        }
        if (missing.isEmpty()) {
            return new Decision(Verdict.RUN, List.of(), "all tools present: " + required);
        }
        boolean strict = forcedStrict || isStrict(env);
        String base = where + " requires " + String.join(", ", missing) + " (not found"
                + (missing.contains(PYTHON_LIBNBD) ? "; python3-libnbd means a python3 that can 'import nbd'" : "")
                + "; install qemu-utils, libnbd-bin, nbdkit and python3-libnbd)";
        if (strict) {
            return new Decision(Verdict.FAIL, List.copyOf(missing),
                    base + ": failing because CI=true or SHEAR_REQUIRE_TOOLS=true");
        }
        return new Decision(Verdict.SKIP, List.copyOf(missing),
                base + ": skipped (set SHEAR_REQUIRE_TOOLS=true to make this a failure)");
    }

    /** True when CI=true or SHEAR_REQUIRE_TOOLS=true (case-insensitive; "1" and "yes" count too). */
    public static boolean isStrict(Map<String, String> env) {
        return truthy(env.get("CI")) || truthy(env.get("SHEAR_REQUIRE_TOOLS"));
    }

    private static boolean truthy(String v) {
        if (v == null) {
            return false;
        }
        String s = v.strip().toLowerCase(Locale.ROOT);
        return s.equals("true") || s.equals("1") || s.equals("yes");
    }
}
