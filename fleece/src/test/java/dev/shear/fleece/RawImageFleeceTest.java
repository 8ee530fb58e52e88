package dev.shear.fleece;

import static dev.shear.fleece.Fixtures.CLUSTER;
import static dev.shear.fleece.Fixtures.pattern;
import static dev.shear.fleece.Fixtures.read;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.shear.block.RawImage;
import dev.shear.fleece.scratch.SpillCodec;
import dev.shear.fleece.scratch.SpillStore;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Copy-before-write over a real raw file with a real spill file. */
class RawImageFleeceTest {
    @TempDir
    Path dir;

    @Test
    void snapshotOfARawImageShouldKeepItsContentsThroughWritesAndZeroWrites() throws Exception {
        byte[] before = new byte[8 * CLUSTER + 1000];
        new SplittableRandom(Long.getLong("shear.seed", 42L)).nextBytes(before);
        Path image = dir.resolve("disk.raw");
        Files.write(image, before);
        Path spill = dir.resolve("spill");
        try (CopyBeforeWrite cbw = new CopyBeforeWrite(RawImage.open(image, true))) {
            SnapshotView view = cbw.startSnapshot(SnapshotOptions.full(),
                    SpillStore.create(spill, SpillCodec.LZ4, Long.MAX_VALUE), null);
            cbw.write(100, pattern(3 * CLUSTER, 1), 0);
            cbw.writeZeroes(5L * CLUSTER + 7, 3L * CLUSTER - 7 + 1000, 0);
            assertEquals(0, read(cbw, 5L * CLUSTER + 7, 1)[0]);
            assertArrayEquals(before, read(view, 0, before.length));
            assertEquals(8, view.stats().copiedClusters());   // 0..3 and 5..8 (8: the short last one), not 4
            view.close();
            assertEquals(false, Files.exists(spill), "the spill file is deleted with the snapshot");
        }
    }
}
