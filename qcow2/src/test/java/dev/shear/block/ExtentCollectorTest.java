package dev.shear.block;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class ExtentCollectorTest {

    @Test
    void adjacentExtentsOfTheSameStateShouldMerge() {
        ExtentCollector c = new ExtentCollector(0, 300, 10);
        assertTrue(c.accept(Extent.data(0, 100, 0, 4096)));
        assertTrue(c.accept(Extent.data(100, 100, 0, 4196)));
        assertFalse(c.accept(Extent.zero(200, 100, 0)));
        assertEquals(List.of(Extent.data(0, 200, 0, 4096), Extent.zero(200, 100, 0)), c.extents());
    }

    @Test
    void dataAtDiscontiguousHostOffsetsShouldNotMerge() {
        ExtentCollector c = new ExtentCollector(0, 200, 10);
        c.accept(Extent.data(0, 100, 0, 4096));
        c.accept(Extent.data(100, 100, 0, 65536));
        assertEquals(2, c.extents().size());
    }

    @Test
    void extentPastTheEndShouldBeClipped() {
        ExtentCollector c = new ExtentCollector(0, 150, 10);
        assertFalse(c.accept(Extent.hole(0, 1000)));
        assertEquals(List.of(Extent.hole(0, 150)), c.extents());
    }

    @Test
    void collectorShouldStopAtMaxExtents() {
        ExtentCollector c = new ExtentCollector(0, 1000, 2);
        assertTrue(c.accept(Extent.data(0, 10, 0, -1)));
        assertTrue(c.accept(Extent.zero(10, 10, 0)));
        assertFalse(c.accept(Extent.hole(20, 10)));
        assertEquals(2, c.extents().size());
        assertEquals(20, c.extents().get(1).end());
    }

    @Test
    void gapBetweenExtentsShouldBeRejected() {
        ExtentCollector c = new ExtentCollector(0, 100, 10);
        c.accept(Extent.data(0, 10, 0, -1));
        assertThrows(IllegalStateException.class, () -> c.accept(Extent.data(20, 10, 0, -1)));
    }
}
