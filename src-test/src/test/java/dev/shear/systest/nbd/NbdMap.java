package dev.shear.systest.nbd;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;

/**
 * The extents {@code nbdinfo --map[=CONTEXT]} prints ({@code OFFSET LENGTH TYPE DESCRIPTION}, one per
 * line), for comparisons that are looser than line-for-line equality.
 */
final class NbdMap {
    /** One printed extent; {@code type} is the context's raw value (flags or depth). */
    record Extent(long offset, long length, long type) {
        long end() {
            return offset + length;
        }
    }

    private NbdMap() {
    }

    static List<Extent> parse(List<String> lines, String what) {
        List<Extent> out = new ArrayList<>();
        long expected = 0;
        for (String line : lines) {
            String[] f = line.strip().split("\\s+", 4);
            if (f.length < 3) {
                throw new AssertionError(what + ": unparsable line '" + line + "'");
            }
            Extent e = new Extent(Long.parseLong(f[0]), Long.parseLong(f[1]), Long.parseLong(f[2]));
            if (e.offset() != expected) {
                throw new AssertionError(what + ": extent at " + e.offset() + " (expected: " + expected + ")\n"
                        + String.join("\n", lines));
            }
            expected = e.end();
            out.add(e);
        }
        return out;
    }

    /**
     * The ranges where {@code shear} says hole or zero (bits 0/1 of base:allocation) but {@code qemu}
     * does not: a server may claim data for a hole, never zero for data.
     */
    static List<String> unsafeClaims(List<Extent> qemu, List<Extent> shear) {
        TreeSet<Long> cuts = cuts(qemu, shear);
        List<String> bad = new ArrayList<>();
        Long prev = null;
        for (long c : cuts) {
            if (prev != null) {
                long q = typeAt(qemu, prev);
                long s = typeAt(shear, prev);
                if ((s & ~q) != 0) {
                    bad.add("[" + prev + ", " + c + "): shear type " + s + ", qemu-nbd type " + q);
                }
            }
            prev = c;
        }
        return bad;
    }

    /**
     * Ranges where the allocation depths differ, except shear 0 (absent) against qemu-nbd &ge; 2 (a
     * backing layer): QEMU's attribution of zeros past a short backing file's end to that layer.
     */
    static List<String> depthDifferences(List<Extent> qemu, List<Extent> shear) {
        List<String> bad = new ArrayList<>();
        TreeSet<Long> cuts = cuts(qemu, shear);
        Long prev = null;
        for (long c : cuts) {
            if (prev != null) {
                long q = typeAt(qemu, prev);
                long s = typeAt(shear, prev);
                if (q != s && !(s == 0 && q >= 2)) {
                    bad.add("[" + prev + ", " + c + "): shear depth " + s + ", qemu-nbd depth " + q);
                }
            }
            prev = c;
        }
        return bad;
    }

    private static TreeSet<Long> cuts(List<Extent> a, List<Extent> b) {
        TreeSet<Long> cuts = new TreeSet<>();
        for (Extent e : a) {
            cuts.add(e.offset());
            cuts.add(e.end());
        }
        for (Extent e : b) {
            cuts.add(e.offset());
            cuts.add(e.end());
        }
        return cuts;
    }

    private static long typeAt(List<Extent> map, long offset) {
        for (Extent e : map) {
            if (offset >= e.offset() && offset < e.end()) {
                return e.type();
            }
        }
        return -1;
    }
}
