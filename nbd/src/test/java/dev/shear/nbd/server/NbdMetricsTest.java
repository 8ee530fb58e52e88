package dev.shear.nbd.server;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class NbdMetricsTest {
    @Test
    void aLatencyShouldLandInTheFirstBucketAtOrAboveIt() {
        NbdMetrics.Histogram h = new NbdMetrics.Histogram();
        h.record(50_000);          // 50 us: le 0.0001
        h.record(100_000);         // exactly 100 us: le 0.0001 (Prometheus buckets are inclusive)
        h.record(200_000);         // 0.2 ms: le 0.0005
        h.record(2_000_000_000L);  // 2 s: le 5
        h.record(9_000_000_000L);  // 9 s: +Inf
        assertEquals(2, h.bucket(0));
        assertEquals(1, h.bucket(1));
        assertEquals(1, h.bucket(NbdMetrics.BUCKETS.length - 1));
        assertEquals(1, h.bucket(NbdMetrics.BUCKETS.length));
        assertEquals(11.00035, h.sumSeconds(), 1e-9);
    }
}
