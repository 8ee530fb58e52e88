package dev.shear.block;

import java.io.IOException;

/** Receives the segments of a read in order; see {@link BlockDevice#readSegments}. */
@FunctionalInterface
public interface ReadSegmentSink {
    void accept(ReadSegment segment) throws IOException;
}
