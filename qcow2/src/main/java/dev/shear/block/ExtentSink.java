package dev.shear.block;

import java.io.IOException;

/**
 * Receives block-status extents in ascending order, contiguous, starting at the requested offset.
 * Returning false stops the walk: a caller that wants only the first extent (NBD_CMD_FLAG_REQ_ONE)
 * or a bounded number of them pays for no more than it takes.
 */
@FunctionalInterface
public interface ExtentSink {
    boolean accept(Extent extent) throws IOException;
}
