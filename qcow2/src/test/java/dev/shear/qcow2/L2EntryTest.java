package dev.shear.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;

/** L1/L2 entry helpers (qcow2-format.md §6.1-§6.5). */
class L2EntryTest {
    private static final long SEED = Long.getLong("shear.seed", 0x5eed_12L);

    @ParameterizedTest(name = "[{index}] 0x{0} ext={1} -> {2}")
    @CsvSource({
        "0000000000000000, false, UNALLOCATED",
        "8000000000050000, false, NORMAL",
        "0000000000050000, false, NORMAL",
        "0000000000000001, false, ZERO_PLAIN",
        "8000000000050001, false, ZERO_ALLOC",
        "4000000000050000, false, COMPRESSED",
        "0000000000000001, true, UNALLOCATED", // no cluster-level zero flag with extended L2
        "8000000000050001, true, NORMAL",
        "4000000000050000, true, COMPRESSED"})
    void clusterTypeShouldFollowQemuClassification(String hex, boolean extendedL2, ClusterType expected) {
        assertEquals(expected, L2Entry.type(Long.parseUnsignedLong(hex, 16), extendedL2));
    }

    static Stream<Arguments> subclusters() {
        long normal = 0x8000000000050000L;
        return Stream.of(
                // Observed (§6.5): write 4k@4k sets alloc bits 2-3.
                Arguments.of(normal, 0x0000000cL, 2, SubclusterType.NORMAL),
                Arguments.of(normal, 0x0000000cL, 4, SubclusterType.UNALLOCATED_ALLOC),
                // Observed: write -z 16k@16k 8k sets zero bits 8-11.
                Arguments.of(normal, 0x00000f00_00000000L, 9, SubclusterType.ZERO_ALLOC),
                Arguments.of(normal, 0x00000001_00000001L, 5, SubclusterType.INVALID),
                Arguments.of(0L, 0L, 0, SubclusterType.UNALLOCATED_PLAIN),
                Arguments.of(0L, 0x80000000_00000000L, 31, SubclusterType.ZERO_PLAIN),
                Arguments.of(0L, 0x00000001L, 7, SubclusterType.INVALID),
                Arguments.of(0x4000000000050000L, 0L, 3, SubclusterType.COMPRESSED));
    }

    @ParameterizedTest(name = "[{index}] bitmap 0x{1} sc {2} -> {3}")
    @MethodSource("subclusters")
    void subclusterTypeShouldFollowQemuTable(long entry, long bitmap, int index, SubclusterType expected) {
        assertEquals(expected, L2Entry.subclusterType(entry, bitmap, index));
    }

    @Test
    void subclusterIndexOutOfRangeShouldBeRejected() {
        assertThrows(IllegalArgumentException.class, () -> L2Entry.subclusterType(0, 0, 32));
    }

    @Test
    void accessorsShouldReadTheirBits() {
        long e = 0x8000000000050001L;
        assertEquals(0x50000, L2Entry.offset(e));
        assertTrue(L2Entry.isCopied(e));
        assertTrue(L2Entry.isZeroFlag(e));
        assertFalse(L2Entry.isCompressed(e));
        assertEquals(0x1fe, L2Entry.reservedBits(0x1ffL));
        assertEquals(0, L2Entry.reservedBits(0x40000000000001ffL)); // compressed: no standard reserved bits
        assertEquals(7, L2Entry.allocMask(0x0000000f_00000007L));
        assertEquals(15, L2Entry.zeroMask(0x0000000f_00000007L));
        assertTrue(L2Entry.hasAllocZeroOverlap(0x0000000f_00000007L));
    }

    @ParameterizedTest(name = "[{index}] cluster_bits {0}")
    @CsvSource({"9, 61", "12, 58", "16, 54", "21, 49"})
    void compressedDescriptorShouldRoundTripForEveryClusterSize(int clusterBits, int shift) {
        assertEquals(shift, L2Entry.csizeShift(clusterBits));
        SplittableRandom r = new SplittableRandom(SEED);
        int maxLength = (int) (L2Entry.csizeMask(clusterBits) * 512) + 1;
        for (int i = 0; i < 1000; i++) {
            long coffset = r.nextLong(1L << Math.min(shift, 48));
            int length = 1 + r.nextInt(Math.min(maxLength, 1 << clusterBits));
            if ((coffset & 511) + length > (L2Entry.csizeMask(clusterBits) + 1) * 512) {
                continue;
            }
            long e = L2Entry.compressed(coffset, length, clusterBits);
            String at = "seed=" + SEED + " coffset=" + coffset + " length=" + length;
            assertEquals(ClusterType.COMPRESSED, L2Entry.type(e, false), at);
            assertEquals(coffset, L2Entry.compressedOffset(e, clusterBits), at);
            int bytes = L2Entry.compressedSectorsBytes(e, clusterBits);
            assertTrue(bytes >= length && bytes - length < 512, at);
            assertEquals(coffset + bytes, L2Entry.compressedRangeStart(e, clusterBits)
                    + L2Entry.compressedRangeLength(e, clusterBits), at);
            assertNull(L2Entry.problem(e, 0, clusterBits, false, 3), at);
        }
    }

    @Test
    void compressedSizeShouldSubtractOffsetIntoFirstSector() {
        // 64 KiB clusters: coffset 0x500ef, 2 additional sectors -> 3 * 512 - 0xef bytes.
        long e = L2Entry.COMPRESSED | (2L << 54) | 0x500efL;
        assertEquals(0x500ef, L2Entry.compressedOffset(e, 16));
        assertEquals(3, L2Entry.compressedSectors(e, 16));
        assertEquals(3 * 512 - 0xef, L2Entry.compressedSectorsBytes(e, 16));
        assertEquals(0x50000, L2Entry.compressedRangeStart(e, 16));
    }

    @Test
    void compressedLengthBeyondFieldShouldBeRejected() {
        assertThrows(IllegalArgumentException.class, () -> L2Entry.compressed(0, 1025, 9)); // 1-bit field
        assertThrows(IllegalArgumentException.class, () -> L2Entry.compressed(1L << 56, 100, 16));
    }

    static Stream<Arguments> problems() {
        return Stream.of(
                Arguments.of(0x8000000000050000L, 0L, false, 3, null),
                Arguments.of(0x8000000000050100L, 0L, false, 3, "reserved bits: 0x100"),
                Arguments.of(0x0100000000050000L, 0L, false, 3, "reserved bits: 0x100000000000000"),
                Arguments.of(0x8000000000050200L, 0L, false, 3, "host offset: 0x50200 (expected: cluster-aligned)"),
                Arguments.of(0x0000000000000001L, 0L, false, 2, "zero flag: set (expected: clear in a version 2"),
                Arguments.of(0x0000000000000001L, 0L, true, 3, "zero flag: set (expected: clear with extended L2"),
                Arguments.of(0xc000000000050000L, 0L, false, 3, "copied flag: set on compressed entry"),
                Arguments.of(0x4000000000050000L, 1L, true, 3, "subcluster bitmap: 0x0000000000000001 (expected: 0 "
                        + "for a compressed cluster)"),
                Arguments.of(0x8000000000050000L, 0x00000001_00000001L, true, 3, "subcluster bitmap: "
                        + "0x0000000100000001 (expected: no subcluster both allocated and zero)"),
                Arguments.of(0L, 0x00000001L, true, 3, "no allocated subcluster without a host offset"));
    }

    @ParameterizedTest(name = "[{index}] {4}")
    @MethodSource("problems")
    void problemShouldNameTheFault(long entry, long bitmap, boolean extendedL2, int version, String expected) {
        String p = L2Entry.problem(entry, bitmap, 16, extendedL2, version);
        if (expected == null) {
            assertNull(p);
        } else {
            assertTrue(p != null && p.contains(expected), p);
        }
    }

    @Test
    void compressedOffsetAbove2To56ShouldBeAProblemFor512ByteClusters() {
        long e = L2Entry.COMPRESSED | (1L << 57);
        assertTrue(L2Entry.problem(e, 0, 9, false, 3).startsWith("compressed offset: 0x200000000000000"));
    }

    @Test
    void l1EntryShouldExposeOffsetCopiedAndProblems() {
        long e = 0x8000000000040000L; // observed L1[0] after a first write (§14)
        assertEquals(0x40000, L1Entry.offset(e));
        assertTrue(L1Entry.isCopied(e));
        assertNull(L1Entry.problem(e, 16));
        assertEquals(e, L1Entry.of(0x40000, true));
        assertEquals("reserved bits: 0x1 (expected: 0)", L1Entry.problem(e | 1, 16));
        assertEquals("reserved bits: 0x100000000000000 (expected: 0)", L1Entry.problem(e | (1L << 56), 16));
        assertEquals("L2 table offset: 0x40200 (expected: cluster-aligned)", L1Entry.problem(0x40200L, 16));
        assertThrows(IllegalArgumentException.class, () -> L1Entry.of(0x40001, false));
    }

    @Test
    void standardEntryShouldRejectBitsOutsideOffset() {
        assertEquals(0x8000000000050000L, L2Entry.standard(0x50000, true));
        assertThrows(IllegalArgumentException.class, () -> L2Entry.standard(1L << 60, false));
    }
}
