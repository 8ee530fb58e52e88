package dev.shear.bench;

import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shear.bench.fixtures.BenchImages;

/**
 * The sanity tests make their images with qemu-img/qemu-io: without them a test is skipped on a
 * developer's machine, and fails under CI (CI=true or SHEAR_REQUIRE_TOOLS=true), where a silent skip
 * would hide a missing install step (style.md: no tests that pass silently when a tool is missing).
 */
final class QemuTools {
    private QemuTools() {
    }

    static void assumeAvailable() {
        String missing = BenchImages.missingQemuTools();
        if (missing == null) {
            return;
        }
        if ("true".equals(System.getenv("CI")) || "true".equals(System.getenv("SHEAR_REQUIRE_TOOLS"))) {
            fail("CI=true and the benchmark fixtures need QEMU's tools: " + missing);
        }
        assumeTrue(false, "skipped: " + missing);
    }
}
