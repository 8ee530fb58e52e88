package dev.shear.qcow2;

import dev.shear.block.BlockCapabilities;
import dev.shear.block.BlockDevice;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.Extent;
import dev.shear.block.ExtentSink;
import dev.shear.block.FileSpan;
import dev.shear.block.ImageFile;
import dev.shear.block.IoFailures;
import dev.shear.block.ReadSegment;
import dev.shear.block.ReadSegmentSink;
import dev.shear.qcow2.bitmap.BitmapDirectory;
import dev.shear.qcow2.bitmap.BitmapDirectoryEntry;
import dev.shear.qcow2.compress.ClusterCodec;
import dev.shear.qcow2.compress.CompressionType;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.zip.DataFormatException;

/**
 * A qcow2 image as a {@link BlockDevice}: the read side (qcow2-format.md; design.md §The block graph).
 *
 * <h2>What a read does</h2>
 * For each run of the guest range ({@link ClusterMapper}, §6.6): DATA reads the host bytes (bytes past
 * the end of the file read as zeros, §1); ZERO_PLAIN / ZERO_ALLOC read zeros and never consult the
 * backing file (§15 pitfall 8); UNALLOCATED reads the backing file at the same guest offset, zeros past
 * its end or without one (§9); COMPRESSED reads csize bytes and inflates the whole cluster (§7).
 *
 * <h2>Writes</h2>
 * A read-write open ({@link Qcow2OpenOptions#readOnly()} false) adds the write engine:
 * {@link Qcow2Writer} (guest data path: allocation, copy-on-write, subclusters, zeroes, discard) over
 * {@link MetadataWriter} (header, L1, L2 cache, {@link ClusterAllocator}, flush ordering),
 * {@link OverlapChecker} and {@link Corruption}. A dirty image (lazy refcounts, unclean close) has its
 * refcounts rebuilt first ({@link RefcountRebuild}); an image with the corrupt bit opens read-only and
 * says why ({@link #readOnlyReason()}).
 *
 * <h2>Concurrency and lock order</h2>
 * <pre>
 *   guest cluster lock (Qcow2Writer stripe; one at a time, or a run taken with tryLock)
 *     -> metadataLock (ReentrantReadWriteLock: read side for lookups, write side for allocation,
 *                      L2/L1/refcount changes, header writes and the metadata part of flush)
 *       -> MetadataCache.lock (leaf: index/clock changes only, never held across I/O; hits take no lock)
 * </pre>
 * Reads take only {@code metadataLock}'s read side, and only while looking up a mapping; data I/O of
 * reads and writes runs outside it, so reads never wait for data writes, and writes to different
 * clusters run in parallel (an in-place overwrite of an allocated cluster takes no metadata lock).
 * Allocation and linking of new clusters are serialized by the write side, briefly (in-memory updates;
 * I/O there only for cache misses and write-backs). A read racing a write or discard of the same range
 * sees the old or the new data (never another range's: freed clusters are not reused before the next
 * flush).
 *
 * <h2>Errors</h2>
 * A malformed L1/L2 entry or undecodable compressed cluster fails the read that meets it with
 * CORRUPT_IMAGE naming the guest and file offsets; other ranges keep working (§11). The corrupt bit
 * allows read-only opens only; the dirty bit is noted ({@link #isDirty()}) and harmless for reads.
 */
public final class Qcow2Image implements BlockDevice {
    private static final System.Logger LOG = System.getLogger(Qcow2Image.class.getName());
    /** Zeros to copy from; never modified (absolute bulk gets only, so sharing it is safe). */
    private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(64 << 10);

    private final ImageFile file;
    private final String name;
    private final Qcow2Header header;
    private final Qcow2Snapshot openedSnapshot;    // null for the active image
    private final List<Qcow2Snapshot> snapshots;
    private final List<BitmapDirectoryEntry> bitmaps;
    private final long size;
    private final int clusterBits;
    private final int clusterSize;
    private final ClusterMapper mapper;
    private final MetadataCache cache;
    private final ClusterCodec codec;
    private final BlockDevice backing;              // null without a backing file; owned, closed with us
    private final long backingSize;                 // backing.size(), or 0
    private final BlockCapabilities capabilities;
    /** The metadata lock: see the class notes. Guards the L1 array and every table in the cache. */
    private final ReentrantReadWriteLock metadataLock;
    private final MetadataWriter metadata;          // null when read-only
    private final Qcow2Writer writer;               // null when read-only
    private final String readOnlyReason;            // why a read-write open became read-only, or null
    /**
     * The run {@link #read} fills, one per thread (no allocation per lookup). Per image, so a read that
     * reaches the backing image's {@code read} never shares it; every use copies out what it needs
     * before any nested call.
     */
    private final ThreadLocal<ClusterRun> readRun = ThreadLocal.withInitial(ClusterRun::new);

    private Qcow2Image(ImageFile file, Qcow2Header header, Qcow2Snapshot openedSnapshot,
                       List<Qcow2Snapshot> snapshots, List<BitmapDirectoryEntry> bitmaps, long size,
                       ClusterMapper mapper, MetadataCache cache, BlockDevice backing,
                       ReentrantReadWriteLock metadataLock, MetadataWriter metadata, String readOnlyReason) {
        this.file = file;
        this.name = file.path().toString();
        this.header = header;
        this.openedSnapshot = openedSnapshot;
        this.snapshots = snapshots;
        this.bitmaps = bitmaps;
        this.size = size;
        this.clusterBits = header.clusterBits();
        this.clusterSize = 1 << clusterBits;
        this.mapper = mapper;
        this.cache = cache;
        this.codec = CompressionType.fromHeader(header.compressionType()).codec();
        this.backing = backing;
        this.backingSize = backing == null ? 0 : backing.size();
        this.metadataLock = metadataLock;
        this.metadata = metadata;
        this.readOnlyReason = readOnlyReason;
        this.writer = metadata == null ? null : new Qcow2Writer(this, metadata, header);
        int preferred = Math.max(4096, clusterSize);
        this.capabilities = metadata == null ? BlockCapabilities.readOnly(preferred)
                : new BlockCapabilities(true, true, true, true, true, true, true, 1, preferred,
                        BlockCapabilities.DEFAULT_MAXIMUM_BLOCK_SIZE);
    }

    /**
     * Opens {@code file} as qcow2. On success the image owns {@code file} (and its backing chain);
     * on failure nothing is left open except {@code file}, which the caller still owns.
     *
     * @throws BlockException INVALID_FORMAT / UNSUPPORTED_FEATURE from the header and tables,
     *         CORRUPT_IMAGE for a writable open of an image marked corrupt, UNSUPPORTED_FEATURE for any
     *         other writable open (the write engine does not exist yet), INVALID_ARGUMENT for an
     *         unknown snapshot
     */
    public static Qcow2Image open(ImageFile file, Qcow2OpenOptions options) throws IOException {
        return open(file, options, BackingChain.Context.top(file));
    }

    static Qcow2Image open(ImageFile file, Qcow2OpenOptions options, BackingChain.Context ctx) throws IOException {
        String name = file.path().toString();
        Qcow2Header header = Qcow2Header.read(file, name);
        boolean writable = !options.readOnly();
        String readOnlyReason = null;
        if (writable) {
            if (options.snapshot() != null) {
                throw BlockException.invalid(name, -1, "snapshot: %s (expected: snapshots open read-only)",
                        options.snapshot());
            }
            if (header.isCorrupt()) {
                readOnlyReason = "incompatible_features: corrupt bit set (expected: clear for a read-write open; "
                        + "repair with qemu-img check -r all); opened read-only";
                LOG.log(System.Logger.Level.WARNING, "{0}: {1}", name, readOnlyReason);
                writable = false;
            } else if (!file.isWritable()) {
                throw BlockException.readOnly(name, "read-write open of a read-only file");
            }
        }
        boolean lazy = false;
        if (writable) {
            lazy = options.lazyRefcounts() != null ? options.lazyRefcounts() : header.hasLazyRefcounts();
            if (lazy && header.version() < 3) {
                throw BlockException.invalid(name, -1, "lazy_refcounts: on (expected: off for compat=0.10 images)");
            }
            if (header.isDirty()) {
                header = repairDirty(file, header, name);
            }
        }
        List<Qcow2Snapshot> snapshots = header.nbSnapshots() == 0 ? List.of()
                : List.copyOf(SnapshotTable.read(file, header, name));
        Qcow2Snapshot snapshot = null;
        long size = header.size();
        long l1Offset = header.l1TableOffset();
        int l1Size = header.l1Size();
        if (options.snapshot() != null) {
            snapshot = Qcow2Snapshot.find(snapshots, options.snapshot());
            if (snapshot == null) {
                throw BlockException.invalid(name, -1, "snapshot: %s (expected: the ID or name of one of the %d "
                        + "internal snapshots)", options.snapshot(), snapshots.size());
            }
            size = snapshot.diskSize() >= 0 ? snapshot.diskSize() : header.size();
            l1Offset = snapshot.l1TableOffset();
            l1Size = snapshot.l1Size();
        }
        // As QEMU: a malformed bitmap directory (while autoclear bit 0 vouches for it) fails the open,
        // even read-only ("Bitmap '...' doesn't satisfy the constraints").
        List<BitmapDirectoryEntry> bitmaps = List.copyOf(BitmapDirectory.read(file, header, name));
        long[] l1 = readL1(file, name, l1Offset, l1Size);
        MetadataCache cache = new MetadataCache(name, options.cacheBytes());
        ClusterMapper mapper = new ClusterMapper(file, name, header, l1, l1Offset, cache);
        ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
        MetadataWriter metadata = null;
        if (writable) {
            OverlapChecker overlap = new OverlapChecker(header.clusterBits());
            overlap.add(0, header.clusterSize(), OverlapChecker.HEADER);
            overlap.add(l1Offset, l1Size * 8L, OverlapChecker.ACTIVE_L1);
            for (long e : l1) {
                if (L1Entry.offset(e) != 0) {
                    overlap.add(L1Entry.offset(e), header.clusterSize(), OverlapChecker.ACTIVE_L2);
                }
            }
            for (Qcow2Snapshot sn : snapshots) {
                overlap.add(sn.l1TableOffset(), sn.l1Size() * 8L, OverlapChecker.INACTIVE_L1);
            }
            if (header.nbSnapshots() > 0) {
                overlap.add(header.snapshotsOffset(), 1, OverlapChecker.SNAPSHOT_TABLE);
            }
            if (header.bitmapsConsistent() && header.bitmapsExtension() != null) {
                BitmapsExtension bx = header.bitmapsExtension();
                overlap.add(bx.directoryOffset(), bx.directorySize(), OverlapChecker.BITMAP_DIRECTORY);
            }
            RefcountTable reftable = RefcountTable.read(file, header, name);
            metadata = new MetadataWriter(file, name, lock, header, l1, cache, mapper::loadL2, reftable,
                    Math.max(4L * header.clusterSize(), 256L << 10), overlap, new Corruption(name, null), lazy);
        }
        BlockDevice backing = header.backingFileName() == null ? null
                : BackingChain.open(file, header, options, ctx);
        return new Qcow2Image(file, header, snapshot, snapshots, bitmaps, size, mapper, cache, backing, lock,
                metadata, readOnlyReason);
    }

    /**
     * The repair QEMU does when it opens a dirty image read-write: first make the header stop claiming
     * structures whose clusters the rebuild will call free (autoclear bits, durable), then rebuild the
     * refcounts from the tables ({@link RefcountRebuild}), which clears the dirty bit.
     */
    private static Qcow2Header repairDirty(ImageFile file, Qcow2Header header, String name) throws IOException {
        Qcow2Header h = header;
        if (h.autoclearFeatures() != 0) {
            h = h.withAutoclearFeatures(0);
            file.write(0, h.encode(h.clusterSize()));
            file.sync();
        }
        LOG.log(System.Logger.Level.INFO, "{0}: dirty image (lazy refcounts, unclean close): rebuilding refcounts",
                name);
        return RefcountRebuild.rebuild(file, h, name);
    }

    /** Reads an L1 table whose size the header or snapshot table bounded (<= 4 Mi entries, 32 MiB). */
    private static long[] readL1(ImageFile file, String name, long offset, int entries) throws IOException {
        if (entries < 0 || entries > Qcow2Limits.MAX_L1_ENTRIES) {
            throw BlockException.format(name, -1, "l1_size: %d (expected: 0..%d)", Integer.toUnsignedLong(entries),
                    Qcow2Limits.MAX_L1_ENTRIES);
        }
        ByteBuffer b = ByteBuffer.allocate(entries * 8);
        try {
            file.read(offset, b);
        } catch (IOException e) {
            throw BlockException.io(name, offset, "L1 table read", e);
        }
        long[] l1 = new long[entries];
        b.flip().asLongBuffer().get(l1);
        return l1;
    }

    /** A mapping lookup under the metadata read lock (tables are only changed under its write side). */
    private ClusterRun lookup(long guestOffset, long maxLength, ClusterRun out) throws IOException {
        metadataLock.readLock().lock();
        try {
            return mapper.lookup(guestOffset, maxLength, out);
        } finally {
            metadataLock.readLock().unlock();
        }
    }

    // ---- BlockDevice ----

    @Override
    public String name() {
        return name;
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public BlockCapabilities capabilities() {
        return capabilities;
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        checkRange(offset, dst.remaining());
        long pos = offset;
        long end = offset + dst.remaining();
        int limit = dst.limit();
        int start = dst.position();
        ClusterRun run = readRun.get();
        try {
            while (pos < end) {
                lookup(pos, end - pos, run);
                int n = (int) run.length();
                start = dst.position();
                dst.limit(start + n);   // narrow dst to the run instead of slicing (no allocation per run)
                switch (run.kind()) {
                    case DATA -> readHost(run.hostOffset(), dst, pos);
                    case ZERO_PLAIN, ZERO_ALLOC -> fillZeros(dst);
                    case UNALLOCATED, UNALLOCATED_ALLOC -> readBacking(pos, dst);
                    case COMPRESSED -> readCompressed(run, dst);
                }
                dst.limit(limit).position(start + n);
                pos += n;
            }
        } catch (IOException | RuntimeException e) {
            dst.limit(limit).position(start);   // as before: the failed run leaves no partial progress
            throw e;
        }
    }

    private void readHost(long hostOffset, ByteBuffer dst, long guestOffset) throws IOException {
        try {
            file.read(hostOffset, dst);
        } catch (IOException e) {
            throw BlockException.io(name, hostOffset, "read of guest offset 0x" + Long.toHexString(guestOffset), e);
        }
    }

    /** Unallocated here: the backing file below its end, zeros past it or without one (§9). */
    private void readBacking(long guestOffset, ByteBuffer dst) throws IOException {
        int fromBacking = (int) Math.max(0, Math.min(dst.remaining(), backingSize - guestOffset));
        if (fromBacking > 0) {
            int start = dst.position();
            int limit = dst.limit();
            dst.limit(start + fromBacking);
            try {
                backing.read(guestOffset, dst);
            } finally {
                dst.limit(limit);
            }
            dst.position(start + fromBacking);
        }
        fillZeros(dst);
    }

    /**
     * Per-thread buffers of {@link #readCompressed}: the compressed bytes and, for partial reads, the
     * whole cluster; direct (what zstd-jni wants), grown to the largest seen (at most 2 MiB of cluster).
     */
    private static final class CompressedBuffers {
        ByteBuffer input = ByteBuffer.allocateDirect(0);
        ByteBuffer cluster = ByteBuffer.allocateDirect(0);

        ByteBuffer input(int n) {
            if (input.capacity() < n) {
                input = ByteBuffer.allocateDirect(n);
            }
            return input.clear().limit(n);
        }

        ByteBuffer cluster(int n) {
            if (cluster.capacity() < n) {
                cluster = ByteBuffer.allocateDirect(n);
            }
            return cluster.clear().limit(n);
        }
    }

    private static final ThreadLocal<CompressedBuffers> COMPRESSED_BUFFERS =
            ThreadLocal.withInitial(CompressedBuffers::new);

    /**
     * Inflates the cluster (§7): straight into {@code dst} when the read covers the whole cluster, else
     * into a per-thread cluster buffer and copies the part the run covers. No allocation per read.
     */
    private void readCompressed(ClusterRun run, ByteBuffer dst) throws IOException {
        long hostOffset = run.hostOffset();
        int csize = run.compressedBytes();
        long guestOffset = run.guestOffset();
        CompressedBuffers buffers = COMPRESSED_BUFFERS.get();
        ByteBuffer compressed = buffers.input(csize);
        try {
            file.read(hostOffset, compressed);   // bytes past the end of the file read as zeros
        } catch (IOException e) {
            throw BlockException.io(name, hostOffset, "compressed cluster read", e);
        }
        compressed.flip();
        int in = (int) (guestOffset & (clusterSize - 1));
        boolean whole = in == 0 && dst.remaining() == clusterSize;
        ByteBuffer cluster = whole ? dst : buffers.cluster(clusterSize);
        try {
            codec.decompress(compressed, cluster);
        } catch (DataFormatException e) {
            long clusterStart = guestOffset & ~(long) (clusterSize - 1);
            throw BlockException.corrupt(name, hostOffset,
                    "compressed cluster (guest offset 0x%x, %d bytes at file offset 0x%x): %s",
                    clusterStart, csize, hostOffset, e.getMessage());
        }
        if (!whole) {
            int n = dst.remaining();
            dst.put(dst.position(), cluster, in, n);
            dst.position(dst.position() + n);
        }
    }

    /** Fills dst's remaining bytes with zeros by bulk copies (not byte by byte), advancing its position. */
    static void fillZeros(ByteBuffer dst) {
        int pos = dst.position();
        int end = dst.limit();
        if (dst.hasArray()) {
            Arrays.fill(dst.array(), dst.arrayOffset() + pos, dst.arrayOffset() + end, (byte) 0);
        } else {
            while (pos < end) {
                int n = Math.min(end - pos, ZEROS.capacity());
                dst.put(pos, ZEROS, 0, n);
                pos += n;
            }
        }
        dst.position(end);
    }

    /**
     * Raw data runs become {@link FileSpan}s (host-contiguous runs merged, also across L2 tables);
     * zeros, and unallocated ranges with nothing below, become {@link ReadSegment.Zeros}; compressed and
     * backing ranges become {@link ReadSegment.Copy}. Adjacent segments of the same kind are merged.
     */
    @Override
    public void readSegments(long offset, long length, ReadSegmentSink sink) throws IOException {
        checkRange(offset, length);
        SegmentMerger merger = new SegmentMerger(sink);
        long pos = offset;
        long end = offset + length;
        ClusterRun run = new ClusterRun();   // one per call, reused for every run
        while (pos < end) {
            lookup(pos, end - pos, run);
            long n = run.length();
            switch (run.kind()) {
                case DATA -> {
                    if (file.channel() != null) {
                        merger.span(run.hostOffset(), n);
                    } else {
                        merger.copy(pos, n);
                    }
                }
                case ZERO_PLAIN, ZERO_ALLOC -> merger.zeros(n);
                case COMPRESSED -> merger.copy(pos, n);
                case UNALLOCATED, UNALLOCATED_ALLOC -> {
                    long fromBacking = Math.max(0, Math.min(n, backingSize - pos));
                    if (fromBacking > 0) {
                        merger.copy(pos, fromBacking);
                    }
                    if (fromBacking < n) {
                        merger.zeros(n - fromBacking);
                    }
                }
            }
            pos += n;
        }
        merger.finish();
    }

    /** Coalesces adjacent segments before they reach the sink. */
    private final class SegmentMerger {
        private final ReadSegmentSink sink;
        private ReadSegment pending;

        SegmentMerger(ReadSegmentSink sink) {
            this.sink = sink;
        }

        void span(long hostOffset, long n) throws IOException {
            if (pending instanceof FileSpan f && f.position() + f.length() == hostOffset) {
                pending = new FileSpan(f.channel(), f.position(), f.length() + n);
                return;
            }
            push(new FileSpan(file.channel(), hostOffset, n));
        }

        void zeros(long n) throws IOException {
            if (pending instanceof ReadSegment.Zeros z) {
                pending = new ReadSegment.Zeros(z.length() + n);
                return;
            }
            push(new ReadSegment.Zeros(n));
        }

        void copy(long guestOffset, long n) throws IOException {
            if (pending instanceof ReadSegment.Copy c && c.guestOffset() + c.length() == guestOffset) {
                pending = new ReadSegment.Copy(c.guestOffset(), c.length() + n);
                return;
            }
            push(new ReadSegment.Copy(guestOffset, n));
        }

        private void push(ReadSegment next) throws IOException {
            if (pending != null) {
                sink.accept(pending);
            }
            pending = next;
        }

        void finish() throws IOException {
            if (pending != null) {
                sink.accept(pending);
                pending = null;
            }
        }
    }

    /**
     * Block status from metadata only (QEMU qcow2_co_block_status + bdrv_co_block_status): DATA is data
     * at depth 0 with its host offset; COMPRESSED is data with {@link Extent#COMPRESSED} and no offset;
     * ZERO_* is ZERO at depth 0 (ZERO_ALLOC with its host offset); unallocated ranges are asked of the
     * backing chain, whose extents come back with depth + 1; ranges no layer has (no backing file, or
     * past the backing file's end) are HOLE|ZERO at depth {@link Extent#UNALLOCATED}.
     *
     * <p>Cost: proportional to the L2 entries visited (an empty L1 entry covers its whole reach in one
     * step); stops as soon as the sink returns false.
     */
    @Override
    public void blockStatus(long offset, long length, ExtentSink sink) throws IOException {
        checkRange(offset, length);
        long pos = offset;
        long end = offset + length;
        ClusterRun run = new ClusterRun();   // one per call, reused for every run
        while (pos < end) {
            lookup(pos, end - pos, run);
            long n = run.length();
            boolean more = switch (run.kind()) {
                case DATA -> sink.accept(Extent.data(pos, n, 0, run.hostOffset()));
                case COMPRESSED -> sink.accept(new Extent(pos, n, Extent.COMPRESSED, 0, -1));
                case ZERO_PLAIN -> sink.accept(Extent.zero(pos, n, 0));
                case ZERO_ALLOC -> sink.accept(new Extent(pos, n, Extent.ZERO, 0, run.hostOffset()));
                case UNALLOCATED, UNALLOCATED_ALLOC -> backingStatus(pos, n, sink);
            };
            if (!more) {
                return;
            }
            pos += n;
        }
    }

    /** Asks the backing chain about [pos, pos + n) and relays its extents one layer deeper. */
    private boolean backingStatus(long pos, long n, ExtentSink sink) throws IOException {
        long fromBacking = Math.max(0, Math.min(n, backingSize - pos));
        if (fromBacking > 0) {
            long stop = pos + fromBacking;
            boolean[] more = {true};
            backing.blockStatus(pos, fromBacking, e -> {
                Extent c = e.end() > stop ? e.clip(e.offset(), stop) : e;
                int depth = c.depth() == Extent.UNALLOCATED ? Extent.UNALLOCATED : c.depth() + 1;
                more[0] = sink.accept(new Extent(c.offset(), c.length(), c.flags(), depth, c.hostOffset()));
                return more[0] && c.end() < stop;
            });
            if (!more[0]) {
                return false;
            }
        }
        if (fromBacking < n) {
            return sink.accept(Extent.hole(pos + fromBacking, n - fromBacking));
        }
        return true;
    }

    /**
     * This layer's own allocation state, without consulting the backing file: as {@link #blockStatus},
     * except that unallocated ranges are reported as HOLE|ZERO at depth {@link Extent#UNALLOCATED}
     * (with the reserved host offset for UNALLOCATED_ALLOC subclusters). Tools that walk the chain layer
     * by layer, as {@code qemu-img map} does, use this.
     */
    public void layerStatus(long offset, long length, ExtentSink sink) throws IOException {
        checkRange(offset, length);
        long pos = offset;
        long end = offset + length;
        ClusterRun run = new ClusterRun();   // one per call, reused for every run
        while (pos < end) {
            lookup(pos, end - pos, run);
            long n = run.length();
            Extent e = switch (run.kind()) {
                case DATA -> Extent.data(pos, n, 0, run.hostOffset());
                case COMPRESSED -> new Extent(pos, n, Extent.COMPRESSED, 0, -1);
                case ZERO_PLAIN -> Extent.zero(pos, n, 0);
                case ZERO_ALLOC -> new Extent(pos, n, Extent.ZERO, 0, run.hostOffset());
                case UNALLOCATED -> Extent.hole(pos, n);
                case UNALLOCATED_ALLOC -> new Extent(pos, n, Extent.HOLE | Extent.ZERO, Extent.UNALLOCATED,
                        run.hostOffset());
            };
            if (!sink.accept(e)) {
                return;
            }
            pos += n;
        }
    }

    /**
     * The mapping of the run starting at {@code guestOffset} (at most {@code maxLength} bytes, within one
     * L2 table's reach; a compressed run covers the rest of its cluster at most). For tools and tests.
     */
    public ClusterMapping map(long guestOffset, long maxLength) throws IOException {
        checkRange(guestOffset, maxLength);
        if (maxLength == 0) {
            throw BlockException.invalid(name, guestOffset, "length: 0 (expected: > 0)");
        }
        return lookup(guestOffset, maxLength, new ClusterRun()).toMapping();
    }

    // ---- getters for tools ----

    /** The header as it is now (a writable image rewrites it: dirty bit, autoclear bits, refcount table). */
    public Qcow2Header header() {
        return metadata != null ? metadata.header() : header;
    }

    /** The internal snapshots (the table as read at open). */
    public List<Qcow2Snapshot> snapshots() {
        return snapshots;
    }

    /**
     * The persistent bitmaps' directory entries. Empty when the image has no bitmaps extension, and
     * also when it has one but autoclear bit 0 is clear: then every bitmap is inconsistent and QEMU
     * ignores them all; {@code header().bitmapsExtension() != null && !header().bitmapsConsistent()}
     * tells that case apart. Entries flagged in_use are listed (inconsistent one by one).
     */
    public List<BitmapDirectoryEntry> bitmaps() {
        return bitmaps;
    }

    /** The snapshot this view was opened at, or null for the active image. */
    public Qcow2Snapshot openedSnapshot() {
        return openedSnapshot;
    }

    /** The backing device (owned by this image), or null. */
    public BlockDevice backing() {
        return backing;
    }

    /** The backing file name as stored in the header, or null. */
    public String backingFileName() {
        return header.backingFileName();
    }

    /** The backing format from the header extension, or null when absent (then it was probed). */
    public String backingFormat() {
        return header.backingFormat();
    }

    public ImageFile file() {
        return file;
    }

    public int clusterBits() {
        return clusterBits;
    }

    public int clusterSize() {
        return clusterSize;
    }

    /** Incompatible bit 0: refcounts may be stale (harmless for reads). */
    public boolean isDirty() {
        return header().isDirty();
    }

    /** Incompatible bit 1 (at open, or signalled since): writes are refused. */
    public boolean isCorrupt() {
        return header().isCorrupt() || (metadata != null && metadata.corruption().isSignalled());
    }

    /** Why a read-write open of this image became read-only (the corrupt bit), or null. */
    public String readOnlyReason() {
        return readOnlyReason;
    }

    /**
     * The metadata-level write API (allocate, write and free clusters, rewrite the header's extensions
     * and autoclear bits) for the bitmap engine and future snapshot/compression writers.
     *
     * @throws BlockException READ_ONLY for a read-only image
     */
    public Qcow2Allocator allocator() throws BlockException {
        if (metadata == null) {
            throw BlockException.readOnly(name, "metadata writes");
        }
        return metadata;
    }

    // ---- writes ----

    private Qcow2Writer writer(String what) throws BlockException {
        if (writer == null) {
            if (readOnlyReason != null) {
                throw BlockException.corrupt(name, -1, "%s refused: %s", what, readOnlyReason);
            }
            throw BlockException.readOnly(name, what);
        }
        return writer;
    }

    /**
     * Writes guest data. Ranges are checked before anything changes (OUT_OF_RANGE); FUA flushes before
     * returning. A failure (NO_SPACE, IO) leaves the image consistent: leaked clusters at most.
     */
    @Override
    public void write(long offset, ByteBuffer src, int flags) throws IOException {
        Qcow2Writer w = writer("write");
        checkRange(offset, src.remaining());
        w.write(offset, src, flags);
    }

    /**
     * Writes one whole guest cluster compressed (backup targets, {@code convert -c}); stored as a normal
     * cluster when compression gains nothing. See {@link Qcow2CompressedWriter}.
     *
     * @param guestClusterOffset cluster-aligned guest offset inside the disk
     * @param wholeCluster cluster_size bytes (the last, partial cluster: those or just its bytes in the disk)
     * @return true if stored compressed
     */
    public boolean writeCompressed(long guestClusterOffset, ByteBuffer wholeCluster) throws IOException {
        return writer("compressed write").compressed().write(guestClusterOffset, wholeCluster);
    }

    @Override
    public void writeZeroes(long offset, long length, int flags) throws IOException {
        Qcow2Writer w = writer("write zeroes");
        checkRange(offset, length);
        w.writeZeroes(offset, length, flags);
    }

    @Override
    public void discard(long offset, long length, int flags) throws IOException {
        Qcow2Writer w = writer("discard");
        checkRange(offset, length);
        w.discard(offset, length, flags);
    }

    /**
     * Gives every guest cluster a host cluster ({@code preallocation=metadata}), written with zeros when
     * {@code full}; used by {@link Qcow2Creator} on a fresh image.
     */
    void preallocate(boolean full) throws IOException {
        writer("preallocate").preallocate(full);
    }

    /** Data, then refcount blocks, L2 tables, L1/header, each fsynced before the next (MetadataWriter). */
    @Override
    public void flush() throws IOException {
        if (metadata != null) {
            metadata.flush();
        }
    }

    /** L2 cache counters (tests assert how many tables an operation loaded). */
    MetadataCache.Stats cacheStats() {
        return cache.stats();
    }

    @Override
    public void close() throws IOException {
        IOException failure = null;
        if (metadata != null && !metadata.corruption().isSignalled()) {
            try {
                metadata.close();
            } catch (IOException e) {
                failure = e;
            }
        }
        if (backing != null) {
            try {
                backing.close();
            } catch (IOException e) {
                failure = IoFailures.add(failure, e);
            }
        }
        cache.clear();
        try {
            file.close();
        } catch (IOException e) {
            failure = IoFailures.add(failure, e);
        }
        if (failure != null) {
            throw failure instanceof BlockException ? failure
                    : new BlockException(BlockErrorKind.IO, name, -1, "close: " + failure.getMessage(), failure);
        }
    }

    @Override
    public String toString() {
        return "Qcow2Image[" + name + (openedSnapshot != null ? "@" + openedSnapshot.id() : "") + "]";
    }
}
