package dev.shear.nbd.server;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.shear.block.Extent;
import org.junit.jupiter.api.Test;

/** The per-extent status values of base:allocation and qemu:allocation-depth. */
class BlockStatusBuilderTest {

    @Test
    void zeroClusterShouldBeHoleAndZeroAsQemuNbdReportsIt() {
        // Regression: a qcow2 zero cluster (allocated at depth 0, reads as zeros) went out as ZERO (2);
        // qemu-nbd 7.2 says HOLE|ZERO (3) because HOLE means "no DATA" there (NbdDifferentialTest).
        Extent zeroCluster = Extent.zero(0, 65536, 0);
        assertEquals(3, BlockStatusBuilder.status(zeroCluster, false));
        assertEquals(1, BlockStatusBuilder.status(zeroCluster, true), "allocation-depth: local");
    }

    @Test
    void dataAndUnallocatedShouldKeepTheirStatus() {
        assertEquals(0, BlockStatusBuilder.status(Extent.data(0, 4096, 1, 8192), false));
        assertEquals(2, BlockStatusBuilder.status(Extent.data(0, 4096, 1, 8192), true), "backing depth 2");
        assertEquals(3, BlockStatusBuilder.status(Extent.hole(0, 4096), false));
        assertEquals(0, BlockStatusBuilder.status(Extent.hole(0, 4096), true), "absent");
        // HOLE without ZERO (undefined contents) stays as it is.
        assertEquals(1, BlockStatusBuilder.status(new Extent(0, 4096, Extent.HOLE, Extent.UNALLOCATED, -1), false));
    }
}
