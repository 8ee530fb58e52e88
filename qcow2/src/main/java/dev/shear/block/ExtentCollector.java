package dev.shear.block;

import java.util.ArrayList;
import java.util.List;

/**
 * An {@link ExtentSink} that merges adjacent extents of the same state, checks that they arrive
 * contiguous inside [start, end), and stops after {@code maxExtents} merged extents
 * (nbdkit server/extents.c).
 */
public final class ExtentCollector implements ExtentSink {
    private final long start;
    private final long end;
    private final int maxExtents;
    private final List<Extent> extents = new ArrayList<>();
    private Extent pending;
    private long next;

    public ExtentCollector(long start, long end, int maxExtents) {
        if (start < 0 || end < start || maxExtents < 1) {
            throw new IllegalArgumentException("collector range [" + start + ", " + end + ") max " + maxExtents);
        }
        this.start = start;
        this.end = end;
        this.maxExtents = maxExtents;
        this.next = start;
    }

    @Override
    public boolean accept(Extent extent) {
        if (extent.offset() != next) {
            throw new IllegalStateException("extent at " + extent.offset() + " (expected: " + next + ")");
        }
        Extent e = extent.end() > end ? extent.clip(start, end) : extent;
        next = e.end();
        if (pending != null && pending.continuesWith(e)) {
            pending = pending.merge(e);
        } else {
            if (pending != null) {
                extents.add(pending);
                if (extents.size() == maxExtents) {
                    pending = null;
                    return false;
                }
            }
            pending = e;
        }
        return next < end;
    }

    /** The merged extents, at most {@code maxExtents}, covering [start, end of the last). */
    public List<Extent> extents() {
        if (pending != null) {
            extents.add(pending);
            pending = null;
        }
        return extents;
    }
}
