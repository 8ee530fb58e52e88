package dev.shear.systest.images;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.RequiresTools;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Seeded generation is reproducible, varied, and yields images qemu-img accepts. */
class RandomImageGeneratorTest {

    @Test
    void sameSeedShouldGiveSameSpecs() {
        assertEquals(RandomImageGenerator.specs(42, 20), RandomImageGenerator.specs(42, 20));
        assertNotEquals(RandomImageGenerator.specs(42, 5), RandomImageGenerator.specs(43, 5));
    }

    @Test
    void specsShouldRespectQemuConstraints() {
        for (RandomImageSpec s : RandomImageGenerator.specs(7, 500)) {
            String m = s.recipe();
            assertTrue(s.size() % 512 == 0 && s.size() > 0 && s.size() <= RandomImageGenerator.MAX_SIZE, m);
            assertTrue(!s.extendedL2() || (s.clusterSize() >= 16384 && s.compat().equals("1.1")), m);
            assertTrue(s.compat().equals("1.1") || (s.refcountBits() == 16 && !"zstd".equals(s.compression())), m);
            assertTrue(s.compression() == null || s.refcountBits() >= 4, m);
        }
    }

    @Test
    void specsShouldCoverTheOptionSpace() {
        List<RandomImageSpec> specs = RandomImageGenerator.specs(11, 500);
        assertTrue(specs.stream().anyMatch(RandomImageSpec::extendedL2));
        assertTrue(specs.stream().anyMatch(s -> "zstd".equals(s.compression())));
        assertTrue(specs.stream().anyMatch(s -> "zlib".equals(s.compression())));
        assertTrue(specs.stream().anyMatch(s -> "raw".equals(s.backingFormat())));
        assertTrue(specs.stream().anyMatch(s -> "qcow2".equals(s.backingFormat())));
        assertTrue(specs.stream().anyMatch(s -> s.compat().equals("0.10")));
        assertTrue(specs.stream().anyMatch(s -> s.size() % s.clusterSize() != 0));
        assertTrue(specs.stream().anyMatch(s -> s.clusterSize() == 512));
        assertTrue(specs.stream().anyMatch(s -> s.clusterSize() == 2097152));
    }

    static Stream<RandomImageSpec> sample() {
        // A fixed seed, so this harness test is stable; the differential tests use the run's seed.
        return RandomImageGenerator.specs(0x5eed, 12).stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("sample")
    @RequiresTools({"qemu-img", "qemu-io"})
    void builtImageShouldPassQemuImgCheckAndMatchReference(RandomImageSpec spec, @TempDir Path dir) {
        ImageCase c = RandomImageGenerator.build(spec, dir);
        QemuImg qemuImg = new QemuImg();
        QemuImg.CheckResult r = qemuImg.check(c.image(), "qcow2");
        assertEquals(0, r.exitCode(), spec.recipe() + "\n" + r.raw());
        assertTrue(qemuImg.compare(c.image(), "qcow2", c.reference(), "raw"), spec.recipe());
    }
}
