package dev.shear.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** Sanity: every benchmark method runs once, produces what it should, and leaves nothing unreleased. */
class NbdFramingBenchmarkTest {
    @Test
    void eachOperationShouldProduceItsMessagesAndReleaseThem() {
        NbdFramingBenchmark b = new NbdFramingBenchmark();
        b.setUp();
        try {
            for (int i = 0; i < 3; i++) {
                assertEquals(1, b.decodeReadRequest(), "one NbdRequest");
                assertEquals(1, b.decodeWriteRequest4k(), "one NbdWriteRequest");
                assertEquals(1, b.encodeSimpleReply(), "one 16-byte header");
                assertEquals(2, b.encodeReadChunk64k(), "header + the data part passed through");
                assertEquals(1, b.encodeBlockStatus16(), "one chunk buffer");
            }
        } finally {
            b.tearDown();
        }
    }
}
