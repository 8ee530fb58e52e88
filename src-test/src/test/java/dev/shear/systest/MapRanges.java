package dev.shear.systest;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;

/**
 * Normalizes and compares {@code qemu-img map --output=json}-shaped arrays.
 *
 * <p>Normalization: each entry becomes (start, length, depth, present, zero, data); {@code offset}
 * (host placement, an implementation choice) is dropped, as is anything else ({@code compressed});
 * the entries must cover [0, virtual size) contiguously in order; adjacent entries with equal
 * (depth, present, zero, data) are merged. Two maps are then compared range by range.
 *
 * <p>Raw layers: for a range decided by a raw file (depth == the case's raw depth) qemu-img reports
 * filesystem holes as {@code zero: true, data: false}, which depends on the filesystem; there the
 * comparison only requires that what qemu-img calls data is data for Shear too (Shear may call a
 * hole data, never the reverse), with equal depth and present.
 *
 * <p>Filesystem holes inside allocated qcow2 clusters: when QEMU suspects metadata preallocation (more
 * clusters referenced than blocks on disk, which happens after partial-cluster writes), it asks the
 * file system with SEEK_HOLE and reports a hole inside a data cluster as {@code zero: true, data: true}.
 * Java 17 has no SEEK_HOLE; Shear reports such a range as plain data ({@code zero: false}), which is
 * still true of the bytes (they read as zeros either way). Accepted, with equal depth and present.
 */
final class MapRanges {
    private static final int MAX_REPORTED = 20;

    private MapRanges() {
    }

    /** One normalized map entry. */
    record Range(long start, long length, int depth, boolean present, boolean zero, boolean data) {
        long end() {
            return start + length;
        }

        boolean sameState(Range o) {
            return depth == o.depth && present == o.present && zero == o.zero && data == o.data;
        }

        String state() {
            return "depth=" + depth + " present=" + present + " zero=" + zero + " data=" + data;
        }

        @Override
        public String toString() {
            return String.format("[%d, %d) len=%d %s", start, end(), length, state());
        }
    }

    /** Parses, checks coverage of [0, virtualSize) and merges; throws AssertionError naming {@code who}. */
    static List<Range> normalize(JsonNode array, long virtualSize, String who) {
        if (array == null || !array.isArray()) {
            throw new AssertionError(who + ": map output is not a JSON array: " + array);
        }
        List<Range> out = new ArrayList<>();
        long expectStart = 0;
        for (JsonNode e : array) {
            Range r = new Range(req(e, "start", who).asLong(), req(e, "length", who).asLong(),
                    req(e, "depth", who).asInt(), req(e, "present", who).asBoolean(),
                    req(e, "zero", who).asBoolean(), req(e, "data", who).asBoolean());
            if (r.start() != expectStart) {
                throw new AssertionError(who + ": map entry " + e + " starts at " + r.start()
                        + " (expected: " + expectStart + ", entries must be contiguous and in order)");
            }
            if (r.length() <= 0) {
                throw new AssertionError(who + ": map entry " + e + " has length " + r.length() + " (expected: > 0)");
            }
            expectStart = r.end();
            if (!out.isEmpty() && out.get(out.size() - 1).sameState(r)) {
                Range last = out.remove(out.size() - 1);
                out.add(new Range(last.start(), last.length() + r.length(), r.depth(), r.present(), r.zero(),
                        r.data()));
            } else {
                out.add(r);
            }
        }
        if (expectStart != virtualSize) {
            throw new AssertionError(who + ": map covers [0, " + expectStart + ") (expected: [0, " + virtualSize
                    + "))");
        }
        return out;
    }

    private static JsonNode req(JsonNode e, String key, String who) {
        JsonNode v = e.get(key);
        if (v == null || v.isNull()) {
            throw new AssertionError(who + ": map entry " + e + " lacks \"" + key + "\"");
        }
        return v;
    }

    /**
     * The ranges where {@code shear} disagrees with {@code qemu} (both normalized), at most
     * {@value #MAX_REPORTED}; empty when they agree. {@code rawDepth} as in {@link MapRanges}.
     */
    static List<String> differences(List<Range> qemu, List<Range> shear, int rawDepth) {
        List<String> diffs = new ArrayList<>();
        int i = 0;
        int j = 0;
        long pos = 0;
        while (i < qemu.size() && j < shear.size() && diffs.size() < MAX_REPORTED) {
            Range q = qemu.get(i);
            Range s = shear.get(j);
            long end = Math.min(q.end(), s.end());
            if (!agree(q, s, rawDepth)) {
                diffs.add(String.format("[%d, %d) (0x%x..0x%x): qemu-img %s, shear %s", pos, end, pos, end,
                        q.state(), s.state()));
            }
            pos = end;
            if (q.end() == end) {
                i++;
            }
            if (s.end() == end) {
                j++;
            }
        }
        return diffs;
    }

    private static boolean agree(Range q, Range s, int rawDepth) {
        if (q.sameState(s)) {
            return true;
        }
        if (rawDepth >= 0 && q.depth() == rawDepth && s.depth() == rawDepth && q.present() == s.present()) {
            // A raw layer: qemu's holes come from the filesystem; Shear may call them data.
            return !q.data() && q.zero() && s.data() && !s.zero();
        }
        if (q.depth() == s.depth() && q.present() && s.present() && q.data() && s.data()) {
            // An allocated cluster that QEMU found to be a filesystem hole: zero is only a hint.
            return q.zero() && !s.zero();
        }
        return false;
    }

    /** One line per range, for failure messages. */
    static String render(List<Range> ranges) {
        StringBuilder sb = new StringBuilder();
        for (Range r : ranges) {
            sb.append("  ").append(r).append('\n');
        }
        return sb.toString();
    }
}
