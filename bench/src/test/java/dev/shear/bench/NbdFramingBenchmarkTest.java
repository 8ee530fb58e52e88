package dev.shear.bench;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.bench.fixtures.FastThreadLocalExecutor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Sanity: every benchmark method runs, answers what it should (the wire bytes it produced, the lengths it
 * decoded) and leaves the input references as it found them; on a plain thread and on a worker of the
 * JMH executor the benchmark uses (where messages are recycled, so repeated operations reuse them).
 */
class NbdFramingBenchmarkTest {
    private static final int[] ONE_REFERENCE_EACH = {1, 1, 1, 1, 1, 1, 1};

    private static void runAll() {
        NbdFramingBenchmark b = new NbdFramingBenchmark();
        b.setUp();
        try {
            for (int i = 0; i < 3; i++) {
                assertEquals(NbdFramingBenchmark.READ_LENGTH, b.decodeReadRequest());
                assertEquals(2 * NbdFramingBenchmark.WRITE_LENGTH, b.decodeWriteRequest4k(), "length + payload");
                assertEquals(NbdFramingBenchmark.STATUS_LENGTH, b.decodeBlockStatusRequest());
                assertEquals(NbdFramingBenchmark.READ_LENGTH, b.decodeReadRequestExtended());
                assertEquals(2 * NbdFramingBenchmark.WRITE_LENGTH, b.decodeWriteRequest4kExtended());
                assertEquals(NbdFramingBenchmark.STATUS_LENGTH, b.decodeBlockStatusRequestExtended());
                assertEquals(16, b.encodeSimpleReply(), "simple reply header");
                assertEquals(20 + 8 + NbdFramingBenchmark.READ_LENGTH, b.encodeReadChunk64k(),
                        "chunk header, offset, data passed through");
                assertEquals(20 + 12, b.encodeHoleChunk());
                assertEquals(20 + 4 + 8 * NbdFramingBenchmark.EXTENTS, b.encodeBlockStatus16());
                assertEquals(32 + 8 + 16 * NbdFramingBenchmark.EXTENTS, b.encodeBlockStatus16Extended());
                assertArrayEquals(ONE_REFERENCE_EACH, b.inputRefCounts(), "inputs back to one reference");
            }
        } finally {
            b.tearDown();
        }
    }

    @Test
    void eachOperationShouldProduceItsBytesAndReleaseThem() {
        runAll();
    }

    @Test
    void eachOperationShouldAlsoWorkWithRecycling() throws Exception {
        ExecutorService jmhWorkers = new FastThreadLocalExecutor(1, "sanity");
        try {
            Future<?> f = jmhWorkers.submit(NbdFramingBenchmarkTest::runAll);
            f.get(30, TimeUnit.SECONDS);
        } finally {
            jmhWorkers.shutdownNow();
            assertTrue(jmhWorkers.awaitTermination(10, TimeUnit.SECONDS), "worker did not stop");
        }
    }
}
