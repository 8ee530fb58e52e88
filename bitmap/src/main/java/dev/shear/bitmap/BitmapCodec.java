package dev.shear.bitmap;

import dev.shear.block.BlockException;
import dev.shear.qcow2.bitmap.BitmapTable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.roaringbitmap.RoaringBitmap;

/**
 * qcow2 bitmap table + data clusters to and from a {@link DirtyBitmap}, bit for bit as QEMU
 * (dirty-bitmaps.md §2.3-§2.4; QEMU block/qcow2-bitmap.c load_bitmap_data / store_bitmap_data,
 * util/hbitmap.c hbitmap_serialize_part).
 *
 * <pre>
 * serialized data = the bitmap as little-endian 64-bit words:  chunk n is bit (n % 8) of byte (n / 8),
 *                   bit 0 = least significant (so 0x01 0x00 0x03 = chunks 0, 16, 17)
 * data bytes      = ceil(chunkCount / 8);  table entries = ceil(data bytes / cluster_size)
 * table entry i   = data bytes [i * cluster_size, (i + 1) * cluster_size): chunks
 *                   [i * cluster_size * 8, (i + 1) * cluster_size * 8)
 *   offset != 0   : the slice is in that data cluster (the last slice may be partial; its tail is 0)
 *   offset == 0   : bit 0 clear = all zeros, bit 0 set = all ones (QEMU reads but never writes ones)
 * </pre>
 *
 * <p>Decoding is O(set runs + data words): each word's runs of ones become one range add, and
 * ranges continuing across words are joined before reaching Roaring. Encoding walks dirty runs
 * (O(runs)) and produces data clusters only for slices with a set bit, zero-filled to the cluster
 * size, as QEMU does; all-zero slices stay entry 0. Bits past the disk end in the last slice must be
 * zero; they are ignored on read (QEMU deserializes only the bitmap's own bits).
 */
public final class BitmapCodec {
    private BitmapCodec() {
    }

    /** Reads one data cluster (or the first {@code dst.remaining()} bytes of it) at a host offset. */
    @FunctionalInterface
    public interface ClusterReader {
        void read(long hostOffset, ByteBuffer dst) throws IOException;
    }

    /** Receives encoded slices in table order; returns the host offset it stored the cluster at. */
    @FunctionalInterface
    public interface ClusterWriter {
        long write(int tableIndex, ByteBuffer cluster) throws IOException;
    }

    /** A non-zero slice of the serialized bitmap, one full cluster (tail zero-filled); equal by content. */
    public record DataCluster(int tableIndex, byte[] bytes) {
        @Override
        public boolean equals(Object o) {
            return o instanceof DataCluster c && c.tableIndex == tableIndex && Arrays.equals(c.bytes, bytes);
        }

        @Override
        public int hashCode() {
            return 31 * tableIndex + Arrays.hashCode(bytes);
        }

        @Override
        public String toString() {
            return "DataCluster[tableIndex=" + tableIndex + ", bytes=" + bytes.length + "]";
        }
    }

    /** A bitmap encoded without a file: table size and the non-zero slices, in table order. */
    public record Encoded(int tableSize, List<DataCluster> clusters) {
    }

    /** Bytes of serialized data: ceil(chunks / 8). */
    public static long dataBytes(long chunkCount) {
        return (chunkCount + 7) >>> 3;
    }

    /** Table entries for {@code chunkCount} chunks (the same formula as BitmapTable.requiredTableSize). */
    public static long tableSize(long chunkCount, int clusterBits) {
        long bytes = dataBytes(chunkCount);
        return (bytes + (1L << clusterBits) - 1) >>> clusterBits;
    }

    /**
     * Rebuilds a bitmap from its table, reading the referenced clusters through {@code reader}.
     *
     * <p>On entry the table was read and checked by {@link BitmapTable#read} (reserved bits, offsets,
     * and a size equal to {@link #tableSize}); the size is re-checked here since a mismatch would shift
     * every bit.
     */
    public static DirtyBitmap decode(String name, long sizeBytes, int granularityBits, boolean enabled,
            boolean persistent, long[] table, int clusterBits, ClusterReader reader, String resource)
            throws IOException {
        long chunkCount = DirtyBitmap.chunksFor(sizeBytes, granularityBits);
        long expected = tableSize(chunkCount, clusterBits);
        if (table.length != expected) {
            throw BlockException.format(resource, -1, "bitmap '%s': bitmap_table_size: %d (expected: %d for size %d"
                    + " at granularity %d)", name, table.length, expected, sizeBytes, 1L << granularityBits);
        }
        int clusterSize = 1 << clusterBits;
        long totalBytes = dataBytes(chunkCount);
        // Slice i of the data holds chunks [i * chunksPerCluster, (i + 1) * chunksPerCluster).
        long chunksPerCluster = (long) clusterSize << 3;
        RunJoiner runs = new RunJoiner(chunkCount);
        // One cluster buffer for the whole load: memory is O(cluster), not O(bitmap data).
        ByteBuffer buf = ByteBuffer.allocate(clusterSize).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < table.length; i++) {
            long firstChunk = i * chunksPerCluster;
            // Only the last slice is partial; bytes past the data end are never read (QEMU reads them
            // whole, but they must be zero and an image truncated right after them is still valid).
            long sliceBytes = Math.min(clusterSize, totalBytes - (long) i * clusterSize);
            long host = BitmapTable.dataOffset(table[i]);
            if (host == 0) {
                // Unallocated slice: zeros unless flagged all ones (only the chunks that exist).
                if (BitmapTable.isAllOnes(table[i])) {
                    runs.add(firstChunk, firstChunk + sliceBytes * 8);
                }
                continue;
            }
            buf.clear().limit((int) sliceBytes);
            try {
                reader.read(host, buf);
            } catch (IOException e) {
                throw BlockException.io(resource, host, "bitmap '" + name + "' data cluster " + i + " read", e);
            }
            decodeSlice(buf.flip(), firstChunk, runs);
        }
        RoaringBitmap chunks = runs.finish();
        // Dirty areas are mostly long runs (sequential writes, coarse merges): run containers make
        // them small and make nextValue/nextAbsentValue hops cheap.
        chunks.runOptimize();
        return DirtyBitmap.wrap(name, sizeBytes, granularityBits, enabled, persistent, chunks);
    }

    /** Adds the set bits of {@code data} (position to limit; LSB-first, little-endian words) to runs. */
    static void decodeSlice(ByteBuffer data, long firstChunk, RunJoiner runs) {
        // hbitmap serializes unsigned longs as little-endian: reading LE words keeps bit n of the
        // stream at bit (n % 64) of word n / 64, so ntz gives chunk numbers directly.
        ByteBuffer d = data.slice().order(ByteOrder.LITTLE_ENDIAN);
        int n = d.remaining();
        int words = n >>> 3;
        for (int w = 0; w < words; w++) {
            long word = d.getLong(w << 3);
            if (word != 0) {
                addWord(word, firstChunk + ((long) w << 6), runs);
            }
        }
        // A slice whose length is not a multiple of 8 (small disks): assemble the last word bytewise.
        long tail = 0;
        for (int b = words << 3; b < n; b++) {
            tail |= (d.get(b) & 0xffL) << ((b & 7) << 3);
        }
        if (tail != 0) {
            addWord(tail, firstChunk + ((long) words << 6), runs);
        }
    }

    /** Each run of ones in {@code word} becomes one range: O(runs in the word), not O(64). */
    private static void addWord(long word, long base, RunJoiner runs) {
        if (word == -1L) {
            runs.add(base, base + 64);
            return;
        }
        long w = word;
        while (w != 0) {
            int start = Long.numberOfTrailingZeros(w);
            long zerosAbove = ~w & (-1L << start);
            int end = zerosAbove == 0 ? 64 : Long.numberOfTrailingZeros(zerosAbove);
            runs.add(base + start, base + end);
            w = end == 64 ? 0 : w & (-1L << end);
        }
    }

    /** Joins adjacent ranges before adding them, and clips them to the chunk count (tail bits). */
    static final class RunJoiner {
        private final RoaringBitmap out = new RoaringBitmap();
        private final long limit;
        private long start = -1;
        private long end = -1;

        RunJoiner(long chunkCount) {
            this.limit = chunkCount;
        }

        void add(long s, long e) {
            // Ranges arrive in increasing order; a range starting where the last ended extends it.
            if (s == end) {
                end = e;
                return;
            }
            flush();
            start = s;
            end = e;
        }

        private void flush() {
            long e = Math.min(end, limit);
            if (start >= 0 && start < e) {
                out.add(start, e);
            }
        }

        RoaringBitmap finish() {
            flush();
            start = -1;
            end = -1;
            return out;
        }
    }

    /**
     * Encodes {@code bitmap} slice by slice, handing each non-zero slice to {@code writer} and filling
     * the table with the offsets it returns; all-zero slices stay entry 0. Memory: one cluster at a
     * time. The bitmap is snapshotted first, so concurrent marks do not tear a slice.
     *
     * @return the bitmap table, to be written by the caller
     */
    public static long[] encode(DirtyBitmap bitmap, int clusterBits, ClusterWriter writer) throws IOException {
        return encode(bitmap, clusterBits, writer, true);
    }

    private static long[] encode(DirtyBitmap bitmap, int clusterBits, ClusterWriter writer, boolean checkOffsets)
            throws IOException {
        RoaringBitmap chunks = bitmap.snapshotChunks();
        long chunkCount = bitmap.chunkCount();
        long size = tableSize(chunkCount, clusterBits);
        if (size > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("bitmap '" + bitmap.name() + "': " + size + " table entries");
        }
        long[] table = new long[(int) size];
        int clusterSize = 1 << clusterBits;
        long chunksPerCluster = (long) clusterSize << 3;
        long[] words = new long[clusterSize >>> 3];
        ByteBuffer out = ByteBuffer.allocate(clusterSize).order(ByteOrder.LITTLE_ENDIAN);
        // The slice being filled in words[], or -1. Slices are visited in increasing order because runs
        // are; a slice with no dirty chunk is never visited and stays entry 0 (QEMU's layout).
        int slice = -1;
        long pos = chunks.isEmpty() ? chunkCount : nextPresent(chunks, 0);
        while (pos < chunkCount) {
            long runEnd = Math.min(chunkCount, nextAbsent(chunks, pos));
            // A run may span slices: set its bits slice by slice, emitting each finished slice.
            long s = pos;
            while (s < runEnd) {
                int idx = (int) (s / chunksPerCluster);
                if (idx != slice) {
                    if (slice >= 0) {
                        table[slice] = emit(writer, slice, words, out, checkOffsets);
                    }
                    slice = idx;
                }
                long sliceEnd = Math.min(runEnd, (idx + 1) * chunksPerCluster);
                setBits(words, (int) (s - idx * chunksPerCluster), (int) (sliceEnd - idx * chunksPerCluster));
                s = sliceEnd;
            }
            pos = runEnd >= chunkCount ? chunkCount : nextPresent(chunks, runEnd);
        }
        if (slice >= 0) {
            table[slice] = emit(writer, slice, words, out, checkOffsets);
        }
        return table;
    }

    /** Pure form of {@link #encode(DirtyBitmap, int, ClusterWriter)}: table entries stay 0 for the caller. */
    public static Encoded encode(DirtyBitmap bitmap, int clusterBits) {
        List<DataCluster> clusters = new ArrayList<>();
        long[] table;
        try {
            table = encode(bitmap, clusterBits, (index, cluster) -> {
                byte[] b = new byte[cluster.remaining()];
                cluster.get(b);
                clusters.add(new DataCluster(index, b));
                return 0;
            }, false);
        } catch (IOException e) {
            throw new AssertionError("in-memory writer cannot fail", e);
        }
        return new Encoded(table.length, List.copyOf(clusters));
    }

    /** Serializes words[] as little-endian, hands the cluster to the writer, and zeroes words[] for reuse. */
    private static long emit(ClusterWriter writer, int slice, long[] words, ByteBuffer out, boolean checkOffset)
            throws IOException {
        out.clear();
        out.asLongBuffer().put(words);
        Arrays.fill(words, 0);
        long host = writer.write(slice, out.duplicate().order(ByteOrder.LITTLE_ENDIAN));
        if (checkOffset && (host == 0 || (host & ~BitmapTable.OFFSET_MASK) != 0)) {
            throw new IllegalStateException("bitmap data cluster " + slice + ": host offset 0x" + Long.toHexString(host)
                    + " (expected: non-zero, 512-aligned, below 2^56)");
        }
        return host;
    }

    /** Sets bits [from, to) of {@code words}, LSB-first (java.util.BitSet#set semantics). */
    static void setBits(long[] words, int from, int to) {
        int first = from >>> 6;
        int last = (to - 1) >>> 6;
        long firstMask = -1L << from;
        long lastMask = -1L >>> -to;
        if (first == last) {
            words[first] |= firstMask & lastMask;
            return;
        }
        words[first] |= firstMask;
        for (int i = first + 1; i < last; i++) {
            words[i] = -1L;
        }
        words[last] |= lastMask;
    }

    private static long nextPresent(RoaringBitmap chunks, long from) {
        if (from >= DirtyBitmap.MAX_CHUNKS) {
            return DirtyBitmap.MAX_CHUNKS;
        }
        long r = chunks.nextValue((int) from);
        return r < 0 ? DirtyBitmap.MAX_CHUNKS : r;
    }

    private static long nextAbsent(RoaringBitmap chunks, long from) {
        if (from >= DirtyBitmap.MAX_CHUNKS) {
            return DirtyBitmap.MAX_CHUNKS;
        }
        long r = chunks.nextAbsentValue((int) from);
        return r < 0 ? DirtyBitmap.MAX_CHUNKS : r;
    }
}
