package dev.shear.fleece.scratch;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.Zeros;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.HashMap;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A scratch target in one temporary file holding copied clusters compressed with a {@link SpillCodec}.
 *
 * <h2>Design notes</h2>
 * <ul>
 *   <li><b>Layout.</b> The file is a sequence of 4 KiB slots. A stored cluster is one contiguous run of
 *       slots holding its compressed bytes (or its raw bytes when compression would not save an eighth
 *       of them and at least one), padded to the slot boundary. Writes are therefore page-aligned (no
 *       read-modify-write in the page cache) and a raw cluster can be read partially without touching
 *       the rest.</li>
 *   <li><b>Index.</b> In memory only: cluster index → (first slot, slot count, stored length, raw
 *       length, codec). Nothing on disk describes the file; it is meaningless without the process
 *       and is deleted on close. No fsync ever: a snapshot does not survive a crash.</li>
 *   <li><b>Zero clusters</b> (all bytes zero, detected on put) are an index entry with no slots: they
 *       cost no file space, and {@link #isZero} lets the snapshot's block status report them as zero
 *       without reading anything.</li>
 *   <li><b>Space reclaim: a free list of holes, coalesced, best fit.</b> Removing a cluster (the backup
 *       client discarded it, or it was replaced) returns its slots to the free list; neighbouring holes
 *       merge, and a hole that reaches the end of the used area shrinks it. Allocation takes the
 *       smallest hole that fits (returning the remainder to the list), else appends at the end. This
 *       was chosen over log-structured segments with compaction: no data is ever moved, so no reader
 *       can race a relocation, and no background work competes with guest writes. The price is
 *       fragmentation: a cluster needs one contiguous run, so scattered small holes may not fit a
 *       large incompressible cluster; then the file grows, up to the capacity. The file's length is
 *       its high-water mark (no hole punching in Java 17); the space is reused, not returned.</li>
 *   <li><b>Capacity</b> bounds the file's high-water mark, i.e. the disk space really used:
 *       {@link #put} fails with NO_SPACE when no hole fits and appending would pass it. Nothing is
 *       stored then; the caller's {@code CbwPolicy} decides what follows.</li>
 *   <li><b>Incompressible data is detected, not compressed in vain.</b> After
 *       {@value #MISSES_BEFORE_SKIP} clusters in a row that compression did not shrink enough to keep
 *       ({@link #worthCompressing}: random or already compressed guest data), only one cluster in
 *       {@value #PROBE_INTERVAL} is tried; the others are stored raw without calling the codec. One
 *       cluster worth keeping compressed ends the skipping. The counters are racy on purpose: they
 *       choose how a cluster is stored, never what it reads back as. A raw cluster in a direct buffer
 *       goes to the file as it is (no copy into the heap).</li>
 *   <li><b>Concurrency.</b> {@link #lock} guards the index and the free space only, for a few
 *       map operations; compression, decompression and file I/O run outside it. A put reserves its
 *       slots under the lock, writes them unlocked (nobody else can reach them), then publishes the
 *       index entry under the lock. Per-cluster ordering is the caller's (see {@link ScratchTarget}):
 *       a slot is freed only by remove/replace of its own cluster, which never overlaps a get of it.</li>
 * </ul>
 */
public final class SpillStore implements ScratchTarget {
    /** Allocation unit: a page, so that every write is page-aligned. */
    static final int SLOT_BITS = 12;
    static final int SLOT_SIZE = 1 << SLOT_BITS;

    /** Slot indexes and counts share one long in {@link #freeBySize}: 40 bits of index = 4 PiB of file. */
    private static final int INDEX_BITS = 40;
    private static final long INDEX_MASK = (1L << INDEX_BITS) - 1;

    /** Largest cluster accepted: {@code CbwLimits.MAX_CLUSTER_SIZE}; bounds the per-thread buffers. */
    static final int MAX_CLUSTER_BYTES = 64 << 20;

    private static final byte[] ZEROS = new byte[1 << 16];

    /** Clusters in a row that did not shrink before compression is skipped (see the design notes). */
    static final int MISSES_BEFORE_SKIP = 8;
    /** While skipping, one cluster in this many (a power of two) is still tried. */
    static final int PROBE_INTERVAL = 16;
    /** A cluster is kept compressed when that saves at least 1/this of its slots (see {@link #worthCompressing}). */
    static final int MIN_SAVING_DIVISOR = 8;

    private final Path path;
    private final FileChannel channel;
    private final SpillCodec codec;
    private final long capacityBytes;
    /** Per-thread work arrays (input copy, compressed block, decompressed cluster), grown on demand. */
    private final ThreadLocal<Buffers> buffers = ThreadLocal.withInitial(Buffers::new);

    /** Guards index, freeByOffset, freeBySize, endSlot, highWaterSlot, usedSlots, closed. */
    private final ReentrantLock lock = new ReentrantLock();
    /** Cluster index → where it is; guarded by lock. */
    private final Map<Long, Entry> index = new HashMap<>();
    /** Holes: first slot → slot count, never adjacent to each other nor to endSlot; guarded by lock. */
    private final TreeMap<Long, Long> freeByOffset = new TreeMap<>();
    /** The same holes keyed (count << 40 | first slot), for best fit; guarded by lock. */
    private final TreeSet<Long> freeBySize = new TreeSet<>();
    /** First slot past the used area; guarded by lock. */
    private long endSlot;
    /** Highest endSlot ever (the file's length in slots); guarded by lock. */
    private long highWaterSlot;
    /** Slots held by stored clusters; guarded by lock. */
    private long usedSlots;
    /** Set once by close; guarded by lock. */
    private boolean closed;

    /** Clusters in a row that compression did not shrink, capped; racy by design (a heuristic). */
    private volatile int misses;
    /** Counts skipped clusters to pick the probes; racy by design. */
    private int skipped;
    /** Clusters stored raw without trying the codec (tests). */
    private final LongAdder compressionSkips = new LongAdder();

    /** One stored cluster. {@code firstSlot} is -1 for a zero cluster (no slots). */
    private record Entry(long firstSlot, long slots, int storedLength, int rawLength, SpillCodec codec) {
        boolean isZero() {
            return firstSlot < 0;
        }
    }

    private SpillStore(Path path, FileChannel channel, SpillCodec codec, long capacityBytes) {
        this.path = path;
        this.channel = channel;
        this.codec = codec;
        this.capacityBytes = capacityBytes;
    }

    /**
     * Creates {@code file} (which must not exist) as an empty store.
     *
     * @param capacityBytes most bytes the file may grow to, or {@link Long#MAX_VALUE}
     */
    public static SpillStore create(Path file, SpillCodec codec, long capacityBytes) throws IOException {
        Objects.requireNonNull(codec, "codec");
        if (capacityBytes < 0) {
            throw new IllegalArgumentException("capacityBytes: " + capacityBytes + " (expected: >= 0)");
        }
        try {
            FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.READ,
                    StandardOpenOption.WRITE);
            return new SpillStore(file, ch, codec, capacityBytes);
        } catch (IOException e) {
            throw BlockException.io(file.toString(), -1, "create spill file", e);
        }
    }

    /** Creates a store in a new temporary file in {@code dir}. */
    public static SpillStore createTemp(Path dir, SpillCodec codec, long capacityBytes) throws IOException {
        Path file;
        try {
            file = Files.createTempFile(dir, "shear-spill-", ".tmp");
            Files.delete(file);
        } catch (IOException e) {
            throw BlockException.io(dir.toString(), -1, "create spill file", e);
        }
        return create(file, codec, capacityBytes);
    }

    public Path path() {
        return path;
    }

    public SpillCodec codec() {
        return codec;
    }

    @Override
    public String name() {
        return path.toString();
    }

    @Override
    public void put(long clusterIndex, ByteBuffer src) throws IOException {
        checkCluster(clusterIndex);
        int rawLength = src.remaining();
        if (rawLength <= 0 || rawLength > MAX_CLUSTER_BYTES) {
            throw BlockException.invalid(name(), -1, "cluster %d length: %d (expected: 1..%d)",
                    clusterIndex, rawLength, MAX_CLUSTER_BYTES);
        }
        if (Zeros.isZero(src)) {
            publish(clusterIndex, new Entry(-1, 0, 0, rawLength, SpillCodec.NONE));
            src.position(src.limit());
            return;
        }
        ByteBuffer out = src.duplicate();
        int stored = rawLength;
        SpillCodec used = SpillCodec.NONE;
        if (codec != SpillCodec.NONE && tryCompression()) {
            Buffers b = buffers.get();
            byte[] in;
            int inOff;
            if (src.hasArray()) {
                in = src.array();
                inOff = src.arrayOffset() + src.position();
            } else {
                in = b.input(rawLength);
                inOff = 0;
                src.duplicate().get(in, 0, rawLength);
            }
            byte[] c = b.compressed(codec.maxCompressedLength(rawLength));
            int n = codec.compress(in, inOff, rawLength, c, 0);
            boolean keep = worthCompressing(n, rawLength);
            misses = keep ? 0 : Math.min(misses + 1, MISSES_BEFORE_SKIP);
            if (keep) {   // else stored raw: reads skip the decompression
                out = ByteBuffer.wrap(c, 0, n);
                stored = n;
                used = codec;
            }
        }
        long slots = slotsFor(stored);
        long first = allocate(clusterIndex, slots);
        try {
            writeFully(out, first << SLOT_BITS);
        } catch (IOException e) {
            lock.lock();
            try {
                release(first, slots);
            } finally {
                lock.unlock();
            }
            throw BlockException.io(name(), first << SLOT_BITS, "spill cluster " + clusterIndex, e);
        }
        publish(clusterIndex, new Entry(first, slots, stored, rawLength, used));
        src.position(src.limit());
    }

    /**
     * Whether a cluster of {@code rawLength} bytes that compressed to {@code compressedLength} is kept
     * compressed: when it saves at least an eighth of its slots, and at least one. Less is not worth a
     * compression on the guest's write path and a decompression on every snapshot read: a 64 KiB cluster
     * must fit in 14 slots of 16. With "one slot" as the bar, random data with a few zero pages (the
     * fleece benchmark's image) kept the codec running on nearly every cluster: 2 % of scratch saved for
     * a tenth of a 2-core machine's CPU.
     */
    static boolean worthCompressing(int compressedLength, int rawLength) {
        long raw = slotsFor(rawLength);
        return slotsFor(compressedLength) <= raw - Math.max(1, raw / MIN_SAVING_DIVISOR);
    }

    /** Whether to run the codec on the next cluster: always, unless the recent ones were not worth it. */
    private boolean tryCompression() {
        if (misses < MISSES_BEFORE_SKIP) {
            return true;
        }
        if ((++skipped & (PROBE_INTERVAL - 1)) == 0) {
            return true;
        }
        compressionSkips.increment();
        return false;
    }

    /** Clusters stored raw because compression was being skipped (see the design notes). */
    long compressionSkips() {
        return compressionSkips.sum();
    }

    @Override
    public void get(long clusterIndex, int offsetInCluster, ByteBuffer dst) throws IOException {
        Entry e;
        lock.lock();
        try {
            requireOpen();
            e = index.get(clusterIndex);
        } finally {
            lock.unlock();
        }
        if (e == null) {
            throw new BlockException(BlockErrorKind.IO, name(), -1,
                    "cluster " + clusterIndex + ": not in the scratch target");
        }
        int length = dst.remaining();
        if (offsetInCluster < 0 || offsetInCluster > e.rawLength || length > e.rawLength - offsetInCluster) {
            throw BlockException.invalid(name(), -1, "cluster %d read: offset %d length %d (expected: within %d)",
                    clusterIndex, offsetInCluster, length, e.rawLength);
        }
        if (e.isZero()) {
            fillZeros(dst, length);
            return;
        }
        long position = e.firstSlot << SLOT_BITS;
        if (e.codec == SpillCodec.NONE) {
            readFully(dst, position + offsetInCluster);
            return;
        }
        Buffers b = buffers.get();
        byte[] c = b.compressed(e.storedLength);
        readFully(ByteBuffer.wrap(c, 0, e.storedLength), position);
        byte[] raw = b.output(e.rawLength);
        e.codec.decompress(c, 0, e.storedLength, raw, 0, e.rawLength, name() + " cluster " + clusterIndex);
        dst.put(raw, offsetInCluster, length);
    }

    @Override
    public boolean isZero(long clusterIndex) {
        lock.lock();
        try {
            Entry e = index.get(clusterIndex);
            return e != null && e.isZero();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void remove(long clusterIndex) throws IOException {
        lock.lock();
        try {
            if (closed) {
                return;
            }
            Entry e = index.remove(clusterIndex);
            if (e != null && !e.isZero()) {
                release(e.firstSlot, e.slots);
            }
        } finally {
            lock.unlock();
        }
    }

    @Override
    public long usedBytes() {
        lock.lock();
        try {
            return usedSlots << SLOT_BITS;
        } finally {
            lock.unlock();
        }
    }

    /** The file's length: the most space it has used at once (space is reused, not returned). */
    public long fileBytes() {
        lock.lock();
        try {
            return highWaterSlot << SLOT_BITS;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public long capacityBytes() {
        return capacityBytes;
    }

    @Override
    public long storedClusters() {
        lock.lock();
        try {
            return index.size();
        } finally {
            lock.unlock();
        }
    }

    /** Number of holes in the free list (tests: coalescing). */
    int holeCount() {
        lock.lock();
        try {
            return freeByOffset.size();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void close() throws IOException {
        lock.lock();
        try {
            if (closed) {
                return;
            }
            closed = true;
            index.clear();
            freeByOffset.clear();
            freeBySize.clear();
            usedSlots = 0;
        } finally {
            lock.unlock();
        }
        try {
            channel.close();
        } finally {
            Files.deleteIfExists(path);
        }
    }

    @Override
    public String toString() {
        return "SpillStore[" + path + ", " + codec + "]";
    }

    // --- space management (all under lock) ---

    /** Reserves {@code slots} contiguous slots: the smallest hole that fits, else the end. */
    private long allocate(long clusterIndex, long slots) throws BlockException {
        lock.lock();
        try {
            requireOpen();
            Long hole = freeBySize.ceiling(slots << INDEX_BITS);
            if (hole != null) {
                long first = hole & INDEX_MASK;
                long count = hole >>> INDEX_BITS;
                removeHole(first, count);
                if (count > slots) {
                    addHole(first + slots, count - slots);
                }
                usedSlots += slots;
                return first;
            }
            long newEnd = endSlot + slots;
            if (newEnd > (capacityBytes >>> SLOT_BITS) || newEnd > INDEX_MASK) {
                throw new BlockException(BlockErrorKind.NO_SPACE, name(), -1, String.format(
                        "scratch capacity: cluster %d needs %d bytes, %d bytes in use by %d clusters, file %d bytes"
                        + " (expected: <= capacity %d)", clusterIndex, slots << SLOT_BITS, usedSlots << SLOT_BITS,
                        index.size(), endSlot << SLOT_BITS, capacityBytes));
            }
            long first = endSlot;
            endSlot = newEnd;
            highWaterSlot = Math.max(highWaterSlot, endSlot);
            usedSlots += slots;
            return first;
        } finally {
            lock.unlock();
        }
    }

    /** Returns slots to the free space, merging with neighbouring holes and the end. On entry: lock held. */
    private void release(long first, long slots) {
        usedSlots -= slots;
        long start = first;
        long end = first + slots;
        Map.Entry<Long, Long> before = freeByOffset.floorEntry(start - 1);
        if (before != null && before.getKey() + before.getValue() == start) {
            removeHole(before.getKey(), before.getValue());
            start = before.getKey();
        }
        Long after = freeByOffset.get(end);
        if (after != null) {
            removeHole(end, after);
            end += after;
        }
        if (end == endSlot) {
            endSlot = start;   // the hole reaches the end: shrink the used area instead
        } else {
            addHole(start, end - start);
        }
    }

    private void addHole(long first, long count) {
        freeByOffset.put(first, count);
        freeBySize.add((count << INDEX_BITS) | first);
    }

    private void removeHole(long first, long count) {
        freeByOffset.remove(first);
        freeBySize.remove((count << INDEX_BITS) | first);
    }

    private void publish(long clusterIndex, Entry entry) throws BlockException {
        lock.lock();
        try {
            if (closed) {
                throw shutdown();
            }
            Entry old = index.put(clusterIndex, entry);
            if (old != null && !old.isZero()) {
                release(old.firstSlot, old.slots);
            }
        } finally {
            lock.unlock();
        }
    }

    private void requireOpen() throws BlockException {
        if (closed) {
            throw shutdown();
        }
    }

    private BlockException shutdown() {
        return new BlockException(BlockErrorKind.SHUTDOWN, name(), -1, "spill store: closed");
    }

    // --- helpers ---

    private static long slotsFor(long bytes) {
        return (bytes + SLOT_SIZE - 1) >>> SLOT_BITS;
    }

    private void checkCluster(long clusterIndex) throws BlockException {
        if (clusterIndex < 0) {
            throw BlockException.invalid(name(), -1, "cluster index: %d (expected: >= 0)", clusterIndex);
        }
    }

    private static void fillZeros(ByteBuffer dst, int length) {
        int left = length;
        while (left > 0) {
            int n = Math.min(ZEROS.length, left);
            dst.put(ZEROS, 0, n);
            left -= n;
        }
    }

    private void writeFully(ByteBuffer src, long position) throws IOException {
        long pos = position;
        while (src.hasRemaining()) {
            pos += channel.write(src, pos);
        }
    }

    private void readFully(ByteBuffer dst, long position) throws IOException {
        long pos = position;
        try {
            while (dst.hasRemaining()) {
                int n = channel.read(dst, pos);
                if (n < 0) {
                    throw new BlockException(BlockErrorKind.IO, name(), pos, "spill file: unexpected end of file");
                }
                pos += n;
            }
        } catch (BlockException e) {
            throw e;
        } catch (IOException e) {
            throw BlockException.io(name(), pos, "spill read", e);
        }
    }

    /** Work arrays of one thread. */
    private static final class Buffers {
        private byte[] input = new byte[0];
        private byte[] compressed = new byte[0];
        private byte[] output = new byte[0];

        byte[] input(int n) {
            if (input.length < n) {
                input = new byte[n];
            }
            return input;
        }

        byte[] compressed(int n) {
            if (compressed.length < n) {
                compressed = new byte[n];
            }
            return compressed;
        }

        byte[] output(int n) {
            if (output.length < n) {
                output = new byte[n];
            }
            return output;
        }
    }
}
