package dev.shear.qcow2;

import com.github.luben.zstd.Zstd;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.zip.Deflater;

/**
 * Test fixture: writes small, valid qcow2 files (qcow2-format.md) from a model of the guest disk, so
 * that unit tests need no external tools. Self-contained on purpose (it does not use the engine's
 * decoders, so a decoder bug cannot hide itself in both).
 *
 * <p>Usage: configure ({@link #version}, {@link #clusterBits}, {@link #refcountOrder},
 * {@link #extendedL2}, {@link #compression}, {@link #backing}), mutate the model ({@link #write},
 * {@link #zeroes}, {@link #discard}, {@link #writeCompressed}, {@link #snapshot}, {@link #bitmap},
 * {@link #rawL2Entry}), then {@link #writeTo} a path. {@link #content} is the reference model of what
 * a reader must return.
 *
 * <p>Layout written (deterministic): cluster 0 header (+ extensions, backing name), refcount table,
 * refcount blocks, active L1, snapshot L1s, snapshot table, bitmap directory and tables, then L2 tables
 * and data clusters in guest order (active image first, then snapshots; a cluster shared with a
 * snapshot is stored once and has refcount 2), then compressed clusters packed back to back at byte
 * granularity, as QEMU packs them. The file ends right after the last compressed byte (or the last
 * structure), so it is usually not a multiple of the cluster size. Refcounts are exact: {@code qemu-img
 * check} finds no errors and no leaks. Copied flags (bit 63) are "refcount == 1".
 *
 * <p>Deflate is written with a full flush every 4 KiB of input, so no back-reference reaches further
 * than QEMU's 4 KiB window (style.md: java.util.zip.Deflater alone uses 32 KiB).
 *
 * <p>Not thread-safe; one image per test.
 */
public final class Qcow2TestImage {
    /** Guest-cluster states of the model. */
    enum Kind { NORMAL, ZERO_PLAIN, ZERO_ALLOC, COMPRESSED, RAW }

    /** Byte filling host space that must never be returned (stale data of ZERO_ALLOC, unallocated subclusters). */
    public static final byte STALE = (byte) 0xEE;

    static final int QCOW2_MAGIC = 0x514649fb;
    static final int EXT_BACKING_FORMAT = 0xe2792aca;
    static final int EXT_BITMAPS = 0x23852875;
    static final int EXT_FEATURE_TABLE = 0x6803f857;

    /**
     * One guest cluster; immutable once stored in a map that a snapshot may share (every change
     * replaces the object), so that identity tells the layout which clusters are shared.
     */
    static final class Cluster {
        final Kind kind;
        final byte[] data;     // guest-visible bytes of NORMAL/COMPRESSED (cluster_size), else null
        final long allocMask;  // extended L2: bit i = subcluster i allocated (NORMAL only)
        final long zeroMask;   // extended L2: bit i = subcluster i reads as zeros
        final long rawEntry;   // RAW: the L2 entry written verbatim
        final long rawBitmap;  // RAW: the subcluster bitmap written verbatim

        Cluster(Kind kind, byte[] data, long allocMask, long zeroMask, long rawEntry, long rawBitmap) {
            this.kind = kind;
            this.data = data;
            this.allocMask = allocMask;
            this.zeroMask = zeroMask;
            this.rawEntry = rawEntry;
            this.rawBitmap = rawBitmap;
        }
    }

    /** A snapshot of the model: its clusters and disk size. */
    record Snapshot(String id, String name, long diskSize, TreeMap<Long, Cluster> clusters) {
    }

    /** A bitmap directory entry to write (all bits clear: every table entry 0). */
    record Bitmap(String name, int granularityBits, int flags) {
    }

    /** Where things landed in the file, for assertions on offsets. */
    public record Layout(long l1Offset, Map<Long, Long> l2Offsets, Map<Long, Long> hostOffsets,
                         Map<Long, Long> compressedOffsets, long refcountTableOffset, long fileSize) {
        /** Host offset of guest cluster {@code clusterIndex}'s data in the active image, or -1. */
        public long hostOffset(long clusterIndex) {
            return hostOffsets.getOrDefault(clusterIndex, -1L);
        }
    }

    /** Reference contents of a device: what a correct reader returns. */
    @FunctionalInterface
    public interface Content {
        byte[] read(long offset, int length);

        /** A raw byte array; zeros beyond its end. */
        static Content of(byte[] bytes) {
            return (offset, length) -> {
                byte[] out = new byte[length];
                if (offset < bytes.length) {
                    System.arraycopy(bytes, (int) offset, out, 0, (int) Math.min(length, bytes.length - offset));
                }
                return out;
            };
        }

        /** Reads as zeros everywhere (no backing file). */
        Content ZEROS = (offset, length) -> new byte[length];
    }

    private long size;
    private int version = 3;
    private int clusterBits = 16;
    private int refcountOrder = 4;
    private boolean extendedL2;
    private int compressionType;  // 0 deflate, 1 zstd
    private String backingName;
    private String backingFormat;
    private long extraIncompatible;
    private long compatible;
    private boolean featureTable;
    private final TreeMap<Long, Cluster> clusters = new TreeMap<>();
    private final List<Snapshot> snapshots = new ArrayList<>();
    private final List<Bitmap> bitmaps = new ArrayList<>();
    private final Map<Long, Long> rawL1 = new LinkedHashMap<>();

    private Qcow2TestImage(long size) {
        this.size = size;
    }

    /** A v3 image of {@code sizeBytes} with 64 KiB clusters, 16-bit refcounts, no backing. */
    public static Qcow2TestImage create(long sizeBytes) {
        return new Qcow2TestImage(sizeBytes);
    }

    // ---- configuration (before the first mutation) ----

    public Qcow2TestImage version(int v) {
        this.version = v;
        return this;
    }

    public Qcow2TestImage clusterBits(int bits) {
        this.clusterBits = bits;
        return this;
    }

    public Qcow2TestImage refcountOrder(int order) {
        this.refcountOrder = order;
        return this;
    }

    public Qcow2TestImage extendedL2(boolean on) {
        this.extendedL2 = on;
        return this;
    }

    /** "zlib" (deflate) or "zstd". */
    public Qcow2TestImage compression(String type) {
        this.compressionType = switch (type) {
            case "zlib", "deflate" -> 0;
            case "zstd" -> 1;
            default -> throw new IllegalArgumentException("compression: " + type);
        };
        return this;
    }

    /** Backing file name (written verbatim) and format (null: no backing-format extension). */
    public Qcow2TestImage backing(String name, String format) {
        this.backingName = name;
        this.backingFormat = format;
        return this;
    }

    /** Extra incompatible bits OR'ed into the header (1 = dirty, 2 = corrupt, unknown bits...). */
    public Qcow2TestImage incompatibleBits(long bits) {
        this.extraIncompatible = bits;
        return this;
    }

    /** Compatible feature bits (1 = lazy refcounts). */
    public Qcow2TestImage compatibleBits(long bits) {
        this.compatible = bits;
        return this;
    }

    /** Write QEMU's feature-name table extension. */
    public Qcow2TestImage featureTable(boolean on) {
        this.featureTable = on;
        return this;
    }

    public long size() {
        return size;
    }

    public int clusterSize() {
        return 1 << clusterBits;
    }

    public int clusterBits() {
        return clusterBits;
    }

    // ---- model mutations ----

    /**
     * Writes {@code data} at guest {@code offset}. Touched clusters (subclusters with extended L2)
     * become allocated; their bytes outside the write keep this image's previous contents, or zeros
     * where this image had none (the builder does not copy from the backing file).
     */
    public Qcow2TestImage write(long offset, byte[] data) {
        checkRange(offset, data.length);
        int cs = clusterSize();
        long pos = offset;
        int done = 0;
        while (done < data.length) {
            long index = pos >>> clusterBits;
            int inCluster = (int) (pos & (cs - 1));
            int n = Math.min(data.length - done, cs - inCluster);
            Cluster old = clusters.get(index);
            byte[] bytes = new byte[cs];
            long alloc = 0;
            long zero = 0;
            if (old != null && (old.kind == Kind.NORMAL || old.kind == Kind.COMPRESSED)) {
                System.arraycopy(old.data, 0, bytes, 0, cs);
                alloc = old.kind == Kind.NORMAL ? old.allocMask : 0;
                zero = old.kind == Kind.NORMAL ? old.zeroMask : 0;
            } else if (old != null && old.kind == Kind.ZERO_PLAIN) {
                zero = old.zeroMask;
            }
            System.arraycopy(data, done, bytes, inCluster, n);
            if (extendedL2) {
                int sub = cs / 32;
                int first = inCluster / sub;
                int last = (inCluster + n - 1) / sub;
                for (int i = first; i <= last; i++) {
                    if ((alloc & (1L << i)) == 0) {
                        // Newly allocated subcluster: unwritten bytes read as zeros.
                        int s = i * sub;
                        for (int b = s; b < s + sub; b++) {
                            if (b < inCluster || b >= inCluster + n) {
                                bytes[b] = 0;
                            }
                        }
                    }
                    alloc |= 1L << i;
                    zero &= ~(1L << i);
                }
            }
            clusters.put(index, new Cluster(Kind.NORMAL, bytes, alloc, zero, 0, 0));
            pos += n;
            done += n;
        }
        return this;
    }

    /**
     * Makes [offset, offset + length) read as zeros with the zero flag (v3). Without extended L2 the
     * range must be cluster-aligned (or end at the disk's end); with it, subcluster-aligned.
     * {@code keepAllocation}: a cluster that had a host cluster keeps it (ZERO_ALLOC).
     */
    public Qcow2TestImage zeroes(long offset, long length, boolean keepAllocation) {
        if (version < 3) {
            throw new IllegalStateException("v2 images have no zero flag");
        }
        forEachUnit(offset, length, (index, mask) -> {
            Cluster old = clusters.get(index);
            boolean hasHost = old != null && (old.kind == Kind.NORMAL || old.kind == Kind.ZERO_ALLOC);
            if (!extendedL2) {
                clusters.put(index, new Cluster(keepAllocation && hasHost ? Kind.ZERO_ALLOC : Kind.ZERO_PLAIN,
                        null, 0, 0, 0, 0));
            } else if (old != null && old.kind == Kind.NORMAL && (keepAllocation || mask != -1L >>> 32)) {
                clusters.put(index, new Cluster(Kind.NORMAL, old.data, old.allocMask & ~mask,
                        old.zeroMask | mask, 0, 0));
            } else {
                long z = old != null && old.kind == Kind.ZERO_PLAIN ? old.zeroMask : 0;
                if (old != null && old.kind != Kind.ZERO_PLAIN && mask != -1L >>> 32) {
                    throw new IllegalStateException("partial zeroing of a compressed/raw cluster " + index);
                }
                clusters.put(index, new Cluster(Kind.ZERO_PLAIN, null, 0, z | mask, 0, 0));
            }
        });
        return this;
    }

    /**
     * Makes the range unallocated again (reads from the backing file). Alignment as {@link #zeroes}.
     * With extended L2, a partly discarded cluster keeps its host cluster (UNALLOCATED_ALLOC
     * subclusters).
     */
    public Qcow2TestImage discard(long offset, long length) {
        forEachUnit(offset, length, (index, mask) -> {
            Cluster old = clusters.get(index);
            if (old == null) {
                return;
            }
            if (!extendedL2 || mask == -1L >>> 32 || old.kind == Kind.COMPRESSED || old.kind == Kind.RAW) {
                clusters.remove(index);
            } else if (old.kind == Kind.NORMAL) {
                clusters.put(index, new Cluster(Kind.NORMAL, old.data, old.allocMask & ~mask,
                        old.zeroMask & ~mask, 0, 0));
            } else {
                clusters.put(index, new Cluster(Kind.ZERO_PLAIN, null, 0, old.zeroMask & ~mask, 0, 0));
            }
        });
        return this;
    }

    /** Stores one whole guest cluster compressed ({@code data} shorter than a cluster is zero-padded). */
    public Qcow2TestImage writeCompressed(long offset, byte[] data) {
        if ((offset & (clusterSize() - 1)) != 0 || data.length > clusterSize()) {
            throw new IllegalArgumentException("compressed write must be one aligned cluster: " + offset);
        }
        byte[] bytes = Arrays.copyOf(data, clusterSize());
        clusters.put(offset >>> clusterBits, new Cluster(Kind.COMPRESSED, bytes, 0, 0, 0, 0));
        return this;
    }

    /**
     * Writes this L2 entry (and subcluster bitmap, with extended L2) verbatim for the guest cluster at
     * {@code offset}: for corruption tests. The model's content of that cluster is undefined.
     */
    public Qcow2TestImage rawL2Entry(long offset, long entry, long bitmap) {
        clusters.put(offset >>> clusterBits, new Cluster(Kind.RAW, null, 0, 0, entry, bitmap));
        return this;
    }

    /** Writes this active L1 entry verbatim (its L2 table, if any, is whatever the layout put there). */
    public Qcow2TestImage rawL1Entry(long l1Index, long entry) {
        rawL1.put(l1Index, entry);
        return this;
    }

    /** Takes an internal snapshot of the current state (later writes do not change it). */
    public Qcow2TestImage snapshot(String id, String name) {
        snapshots.add(new Snapshot(id, name, size, new TreeMap<>(clusters)));
        return this;
    }

    /** Changes the virtual size (after a snapshot: snapshots keep their own size). Drops clusters past the end. */
    public Qcow2TestImage resize(long newSize) {
        size = newSize;
        clusters.tailMap((newSize + clusterSize() - 1) >>> clusterBits, true).clear();
        return this;
    }

    /** Adds an empty persistent bitmap; {@code flags}: 1 in_use, 2 auto. */
    public Qcow2TestImage bitmap(String name, int granularityBits, int flags) {
        bitmaps.add(new Bitmap(name, granularityBits, flags));
        return this;
    }

    // ---- reference model ----

    /** What a correct reader of the active image returns, with {@code backing} below it. */
    public Content content(Content backing) {
        return content(clusters, backing);
    }

    /** The active image's content with no backing file. */
    public Content content() {
        return content(Content.ZEROS);
    }

    /** What a reader of snapshot {@code idOrName} returns. */
    public Content snapshotContent(String idOrName, Content backing) {
        for (Snapshot s : snapshots) {
            if (s.id.equals(idOrName) || s.name.equals(idOrName)) {
                return content(s.clusters, backing);
            }
        }
        throw new IllegalArgumentException("no snapshot " + idOrName);
    }

    private Content content(TreeMap<Long, Cluster> map, Content backing) {
        int cs = clusterSize();
        int sub = cs / 32;
        return (offset, length) -> {
            byte[] out = backing.read(offset, length);
            long pos = offset;
            while (pos < offset + length) {
                long index = pos >>> clusterBits;
                int in = (int) (pos & (cs - 1));
                int n = (int) Math.min(cs - in, offset + length - pos);
                Cluster c = map.get(index);
                int dst = (int) (pos - offset);
                if (c != null) {
                    switch (c.kind) {
                        case ZERO_ALLOC -> Arrays.fill(out, dst, dst + n, (byte) 0);
                        case COMPRESSED -> System.arraycopy(c.data, in, out, dst, n);
                        case RAW -> Arrays.fill(out, dst, dst + n, (byte) 0);
                        case ZERO_PLAIN, NORMAL -> {
                            for (int b = 0; b < n; b++) {
                                int at = in + b;
                                long bit = 1L << (at / sub);
                                if (!extendedL2) {
                                    out[dst + b] = c.kind == Kind.NORMAL ? c.data[at] : 0;
                                } else if ((c.allocMask & bit) != 0) {
                                    out[dst + b] = c.data[at];
                                } else if ((c.zeroMask & bit) != 0) {
                                    out[dst + b] = 0;
                                }
                            }
                        }
                        default -> throw new AssertionError(c.kind);
                    }
                }
                pos += n;
            }
            return out;
        };
    }

    // ---- file writing ----

    /** Writes the image to {@code path} (replacing it) and returns where things landed. */
    public Layout writeTo(Path path) throws IOException {
        validate();
        // Pass 1 sizes everything but the refcount structures; pass 2 places them in front.
        Writer probe = new Writer(1);
        probe.layOut();
        long used = probe.endCluster();
        int refBlockEntriesBits = clusterBits + 3 - refcountOrder;
        long blocks = 0;
        long tableClusters = 0;
        while (true) {
            long total = used + blocks + tableClusters;
            long b = (total + (1L << refBlockEntriesBits) - 1) >>> refBlockEntriesBits;
            long t = (b * 8 + clusterSize() - 1) >>> clusterBits;
            if (b == blocks && t == tableClusters) {
                break;
            }
            blocks = b;
            tableClusters = t;
        }
        Writer w = new Writer(1 + tableClusters + blocks);
        w.layOut();
        return w.write(path, tableClusters, blocks);
    }

    private void validate() {
        if (version != 2 && version != 3) {
            throw new IllegalStateException("version " + version);
        }
        if (version == 2 && (extendedL2 || compressionType != 0 || refcountOrder != 4)) {
            throw new IllegalStateException("v2 supports no extended L2, zstd or refcount order != 4");
        }
        if (extendedL2 && clusterBits < 14) {
            throw new IllegalStateException("extended L2 needs cluster_bits >= 14");
        }
    }

    private int l2Entries() {
        return clusterSize() / (extendedL2 ? 16 : 8);
    }

    private long l1Size(long diskSize) {
        long perL2 = (long) l2Entries() << clusterBits;
        return (diskSize + perL2 - 1) / perL2;
    }

    /** One layout of the file, starting data structures at {@code firstCluster}. */
    private final class Writer {
        final int cs = clusterSize();
        long nextCluster;
        final long activeL1Offset;
        final long[] snapL1Offsets = new long[snapshots.size()];
        long snapTableOffset;
        long snapTableSize;
        long bitmapDirOffset;
        long bitmapDirSize;
        final long[] bitmapTableOffsets = new long[bitmaps.size()];
        final List<L2Table> l2Tables = new ArrayList<>();
        final Map<Long, Long> activeL2 = new TreeMap<>();
        final List<Map<Long, Long>> snapL2 = new ArrayList<>();
        final IdentityHashMap<Cluster, Long> hostOf = new IdentityHashMap<>();
        final IdentityHashMap<Cluster, long[]> compressedOf = new IdentityHashMap<>(); // {offset, length}
        final Map<Cluster, byte[]> compressedBytes = new IdentityHashMap<>();
        final List<Cluster> compressedOrder = new ArrayList<>();
        final IdentityHashMap<Cluster, Integer> compressedRefs = new IdentityHashMap<>();
        long compressedEnd;
        final TreeMap<Long, Long> refcounts = new TreeMap<>();

        record L2Table(long hostOffset, long l1Index, TreeMap<Long, Cluster> map) {
        }

        Writer(long firstCluster) {
            nextCluster = firstCluster;
            activeL1Offset = allocBytes(l1Size(size) * 8);
        }

        long allocBytes(long bytes) {
            long n = Math.max(1, (bytes + cs - 1) >>> clusterBits);
            long at = nextCluster << clusterBits;
            for (long i = 0; i < n; i++) {
                ref(nextCluster + i);
            }
            nextCluster += n;
            return at;
        }

        void ref(long cluster) {
            refcounts.merge(cluster, 1L, Long::sum);
        }

        void layOut() {
            for (int i = 0; i < snapshots.size(); i++) {
                snapL1Offsets[i] = allocBytes(l1Size(snapshots.get(i).diskSize) * 8);
            }
            if (!snapshots.isEmpty()) {
                snapTableSize = snapshotTable().length;
                snapTableOffset = allocBytes(snapTableSize);
            }
            if (!bitmaps.isEmpty()) {
                bitmapDirSize = bitmapDirectory(new long[bitmaps.size()]).length;
                bitmapDirOffset = allocBytes(bitmapDirSize);
                for (int i = 0; i < bitmaps.size(); i++) {
                    bitmapTableOffsets[i] = allocBytes(bitmapTableSize(bitmaps.get(i)) * 8L);
                }
            }
            mapTables(clusters, activeL2);
            for (Snapshot s : snapshots) {
                Map<Long, Long> m = new TreeMap<>();
                mapTables(s.clusters, m);
                snapL2.add(m);
            }
            // Compressed data last, packed at byte granularity like QEMU's free-byte offset.
            long pos = nextCluster << clusterBits;
            long maxRefcount = refcountOrder == 6 ? Long.MAX_VALUE : (1L << (1 << refcountOrder)) - 1;
            Map<Long, Long> shared = new TreeMap<>();   // host cluster -> compressed references so far
            for (Cluster c : compressedOrder) {
                byte[] z = compressedBytes.get(c);
                long refs = compressedRefs.get(c);
                if (!fits(shared, pos, z.length, refs, maxRefcount)) {
                    // Narrow refcounts cannot count another sharer: start in a fresh host cluster.
                    pos = ((pos + cs - 1) >>> clusterBits) << clusterBits;
                    if (!fits(shared, pos, z.length, refs, maxRefcount)) {
                        throw new IllegalStateException("compressed cluster referenced " + refs
                                + " times does not fit refcount_order " + refcountOrder);
                    }
                }
                for (long h = pos >>> clusterBits; h <= (pos + z.length - 1) >>> clusterBits; h++) {
                    shared.merge(h, refs, Long::sum);
                }
                compressedOf.put(c, new long[] {pos, z.length});
                pos += z.length;
            }
            compressedEnd = pos;
            long endCluster = (pos + cs - 1) >>> clusterBits;
            nextCluster = Math.max(nextCluster, endCluster);
        }

        boolean fits(Map<Long, Long> shared, long pos, long length, long refs, long max) {
            for (long h = pos >>> clusterBits; h <= (pos + length - 1) >>> clusterBits; h++) {
                if (shared.getOrDefault(h, 0L) + refs > max) {
                    return false;
                }
            }
            return true;
        }

        void mapTables(TreeMap<Long, Cluster> map, Map<Long, Long> l2Offsets) {
            int per = l2Entries();
            for (Map.Entry<Long, Cluster> e : map.entrySet()) {
                long l1Index = e.getKey() / per;
                if (!l2Offsets.containsKey(l1Index)) {
                    long off = allocBytes(cs);
                    l2Offsets.put(l1Index, off);
                    l2Tables.add(new L2Table(off, l1Index, map));
                }
                Cluster c = e.getValue();
                boolean needsHost = c.kind == Kind.NORMAL || c.kind == Kind.ZERO_ALLOC;
                if (needsHost) {
                    Long host = hostOf.get(c);
                    if (host == null) {
                        hostOf.put(c, allocBytes(cs));
                    } else {
                        ref(host >>> clusterBits);
                    }
                } else if (c.kind == Kind.COMPRESSED) {
                    if (!compressedBytes.containsKey(c)) {
                        compressedBytes.put(c, compress(c.data));
                        compressedOrder.add(c);
                    }
                    compressedRefs.merge(c, 1, Integer::sum);
                }
            }
        }

        long endCluster() {
            return nextCluster;
        }

        long refcount(long hostOffset) {
            return refcounts.getOrDefault(hostOffset >>> clusterBits, 0L);
        }

        long l2Entry(Cluster c) {
            long copied = 1L << 63;
            switch (c.kind) {
                case NORMAL, ZERO_ALLOC -> {
                    long host = hostOf.get(c);
                    long e = host | (refcount(host) == 1 ? copied : 0);
                    return c.kind == Kind.ZERO_ALLOC && !extendedL2 ? e | 1 : e;
                }
                case ZERO_PLAIN -> {
                    return extendedL2 ? 0 : 1;
                }
                case COMPRESSED -> {
                    long[] z = compressedOf.get(c);
                    int shift = 62 - (clusterBits - 8);
                    long additional = (z[0] + z[1] - 1) / 512 - z[0] / 512;
                    if (additional >= 1L << (clusterBits - 8)) {
                        throw new IllegalStateException("compressed cluster too large: " + z[1] + " bytes");
                    }
                    return (1L << 62) | (additional << shift) | z[0];
                }
                case RAW -> {
                    return c.rawEntry;
                }
                default -> throw new AssertionError(c.kind);
            }
        }

        long l2Bitmap(Cluster c) {
            return switch (c.kind) {
                case NORMAL -> c.allocMask | (c.zeroMask << 32);
                case ZERO_ALLOC -> 0xffffffffL << 32;
                case ZERO_PLAIN -> c.zeroMask << 32;
                case RAW -> c.rawBitmap;
                default -> 0;
            };
        }

        Layout write(Path path, long tableClusters, long blocks) throws IOException {
            // Refcount structures occupy clusters [1, 1 + tableClusters + blocks).
            ref(0);
            for (long i = 1; i < 1 + tableClusters + blocks; i++) {
                ref(i);
            }
            // Compressed data: one reference per host cluster each compressed cluster touches.
            for (Map.Entry<Cluster, long[]> e : compressedOf.entrySet()) {
                long[] z = e.getValue();
                for (int r = 0; r < compressedRefs.get(e.getKey()); r++) {
                    for (long c = z[0] >>> clusterBits; c <= (z[0] + z[1] - 1) >>> clusterBits; c++) {
                        ref(c);
                    }
                }
            }
            long refTableOffset = (long) cs;
            try (FileChannel ch = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                    StandardOpenOption.READ, StandardOpenOption.TRUNCATE_EXISTING)) {
                put(ch, 0, header(refTableOffset, tableClusters));
                writeRefcounts(ch, refTableOffset, tableClusters, blocks);
                put(ch, activeL1Offset, l1Table(activeL2, l1Size(size), true));
                for (int i = 0; i < snapshots.size(); i++) {
                    put(ch, snapL1Offsets[i], l1Table(snapL2.get(i), l1Size(snapshots.get(i).diskSize), false));
                }
                if (!snapshots.isEmpty()) {
                    put(ch, snapTableOffset, snapshotTable());
                }
                if (!bitmaps.isEmpty()) {
                    put(ch, bitmapDirOffset, bitmapDirectory(bitmapTableOffsets));
                    for (int i = 0; i < bitmaps.size(); i++) {
                        put(ch, bitmapTableOffsets[i], new byte[bitmapTableSize(bitmaps.get(i)) * 8]);
                    }
                }
                Map<Long, Long> hostOffsets = new TreeMap<>();
                writeTables(ch, hostOffsets);
                Map<Long, Long> compressed = new TreeMap<>();
                for (Map.Entry<Long, Cluster> e : clusters.entrySet()) {
                    long[] z = compressedOf.get(e.getValue());
                    if (z != null) {
                        compressed.put(e.getKey(), z[0]);
                    }
                }
                for (Map.Entry<Cluster, long[]> e : compressedOf.entrySet()) {
                    put(ch, e.getValue()[0], compressedBytes.get(e.getKey()));
                }
                long end = Math.max(compressedEnd, ch.size());
                return new Layout(activeL1Offset, activeL2, hostOffsets, compressed, refTableOffset, end);
            }
        }

        void writeTables(FileChannel ch, Map<Long, Long> activeHostOffsets) throws IOException {
            int per = l2Entries();
            int entryBytes = extendedL2 ? 16 : 8;
            for (L2Table t : l2Tables) {
                ByteBuffer b = ByteBuffer.allocate(cs);
                long first = t.l1Index * per;
                for (Map.Entry<Long, Cluster> e : t.map.subMap(first, first + per).entrySet()) {
                    Cluster c = e.getValue();
                    int at = (int) (e.getKey() - first) * entryBytes;
                    b.putLong(at, l2Entry(c));
                    if (extendedL2) {
                        b.putLong(at + 8, l2Bitmap(c));
                    }
                }
                put(ch, t.hostOffset, b.array());
            }
            for (Map.Entry<Long, Cluster> e : clusters.entrySet()) {
                Long host = hostOf.get(e.getValue());
                if (host != null && e.getValue().kind == Kind.NORMAL) {
                    activeHostOffsets.put(e.getKey(), host);
                }
            }
            for (Map.Entry<Cluster, Long> e : hostOf.entrySet()) {
                put(ch, e.getValue(), hostBytes(e.getKey()));
            }
        }

        /** The host cluster as stored: data where allocated, stale filler everywhere else. */
        byte[] hostBytes(Cluster c) {
            byte[] b = new byte[cs];
            Arrays.fill(b, STALE);
            if (c.kind == Kind.NORMAL) {
                int sub = cs / 32;
                for (int i = 0; i < 32; i++) {
                    if (!extendedL2 || (c.allocMask & (1L << i)) != 0) {
                        System.arraycopy(c.data, i * sub, b, i * sub, sub);
                    }
                }
            }
            return b;
        }

        byte[] l1Table(Map<Long, Long> l2Offsets, long entries, boolean active) {
            ByteBuffer b = ByteBuffer.allocate((int) entries * 8);
            for (Map.Entry<Long, Long> e : l2Offsets.entrySet()) {
                b.putLong((int) (e.getKey() * 8), e.getValue() | 1L << 63);
            }
            if (active) {
                for (Map.Entry<Long, Long> e : rawL1.entrySet()) {
                    b.putLong((int) (e.getKey() * 8), e.getValue());
                }
            }
            return b.array();
        }

        void writeRefcounts(FileChannel ch, long tableOffset, long tableClusters, long blocks)
                throws IOException {
            int bits = 1 << refcountOrder;
            long perBlock = (long) cs * 8 / bits;
            long max = bits == 64 ? Long.MAX_VALUE : (1L << bits) - 1;
            ByteBuffer table = ByteBuffer.allocate((int) (tableClusters * cs));
            for (long blk = 0; blk < blocks; blk++) {
                long blockOffset = (1 + tableClusters + blk) * cs;
                table.putLong((int) (blk * 8), blockOffset);
                byte[] block = new byte[cs];
                for (Map.Entry<Long, Long> e : refcounts.subMap(blk * perBlock, (blk + 1) * perBlock).entrySet()) {
                    long v = e.getValue();
                    if (Long.compareUnsigned(v, max) > 0) {
                        throw new IllegalStateException("refcount " + v + " does not fit in " + bits + " bits");
                    }
                    setRefcount(block, (int) (e.getKey() - blk * perBlock), bits, v);
                }
                put(ch, blockOffset, block);
            }
            put(ch, tableOffset, table.array());
        }

        byte[] header(long refTableOffset, long tableClusters) {
            ByteBuffer h = ByteBuffer.allocate(cs);
            int headerLength = version == 2 ? 72 : 112;
            h.putInt(0, QCOW2_MAGIC);
            h.putInt(4, version);
            h.putInt(20, clusterBits);
            h.putLong(24, size);
            h.putInt(36, (int) l1Size(size));
            h.putLong(40, activeL1Offset);
            h.putLong(48, refTableOffset);
            h.putInt(56, (int) tableClusters);
            h.putInt(60, snapshots.size());
            h.putLong(64, snapshots.isEmpty() ? 0 : snapTableOffset);
            if (version == 3) {
                long incompatible = extraIncompatible | (extendedL2 ? 16 : 0) | (compressionType != 0 ? 8 : 0);
                h.putLong(72, incompatible);
                h.putLong(80, compatible);
                h.putLong(88, bitmaps.isEmpty() ? 0 : 1);
                h.putInt(96, refcountOrder);
                h.putInt(100, headerLength);
                h.put(104, (byte) compressionType);
            }
            int pos = headerLength;
            if (backingFormat != null) {
                pos = extension(h, pos, EXT_BACKING_FORMAT, backingFormat.getBytes(StandardCharsets.UTF_8));
            }
            if (featureTable) {
                pos = extension(h, pos, EXT_FEATURE_TABLE, featureNames());
            }
            if (!bitmaps.isEmpty()) {
                ByteBuffer x = ByteBuffer.allocate(24);
                x.putInt(0, bitmaps.size());
                x.putLong(8, bitmapDirSize);
                x.putLong(16, bitmapDirOffset);
                pos = extension(h, pos, EXT_BITMAPS, x.array());
            }
            pos = extension(h, pos, 0, new byte[0]);
            if (backingName != null) {
                byte[] name = backingName.getBytes(StandardCharsets.UTF_8);
                h.putLong(8, pos);
                h.putInt(16, name.length);
                h.put(pos, name);
            }
            return h.array();
        }

        int extension(ByteBuffer h, int pos, int type, byte[] data) {
            h.putInt(pos, type);
            h.putInt(pos + 4, data.length);
            h.put(pos + 8, data);
            return pos + 8 + ((data.length + 7) & ~7);
        }

        byte[] snapshotTable() {
            ByteBuffer b = ByteBuffer.allocate(snapshots.size() * (1024 + 2048) + 64);
            for (int i = 0; i < snapshots.size(); i++) {
                Snapshot s = snapshots.get(i);
                byte[] id = s.id.getBytes(StandardCharsets.UTF_8);
                byte[] name = s.name.getBytes(StandardCharsets.UTF_8);
                int start = b.position();
                b.putLong(snapL1Offsets[i]);
                b.putInt((int) l1Size(s.diskSize));
                b.putShort((short) id.length);
                b.putShort((short) name.length);
                b.putInt(1_700_000_000 + i);   // date seconds
                b.putInt(0);                    // date nanoseconds
                b.putLong(0);                   // vm clock
                b.putInt(0);                    // vm state size
                b.putInt(24);                   // extra data size
                b.putLong(0);                   // vm state size, 64-bit
                b.putLong(s.diskSize);
                b.putLong(-1);                  // icount: disabled
                b.put(id);
                b.put(name);
                while ((b.position() - start) % 8 != 0) {
                    b.put((byte) 0);
                }
            }
            return Arrays.copyOf(b.array(), b.position());
        }

        byte[] bitmapDirectory(long[] tableOffsets) {
            ByteBuffer b = ByteBuffer.allocate(bitmaps.size() * (24 + 1024 + 8));
            for (int i = 0; i < bitmaps.size(); i++) {
                Bitmap m = bitmaps.get(i);
                byte[] name = m.name.getBytes(StandardCharsets.UTF_8);
                int start = b.position();
                b.putLong(tableOffsets[i]);
                b.putInt(bitmapTableSize(m));
                b.putInt(m.flags);
                b.put((byte) 1);
                b.put((byte) m.granularityBits);
                b.putShort((short) name.length);
                b.putInt(0);
                b.put(name);
                while ((b.position() - start) % 8 != 0) {
                    b.put((byte) 0);
                }
            }
            return Arrays.copyOf(b.array(), b.position());
        }

        void put(FileChannel ch, long offset, byte[] bytes) throws IOException {
            ByteBuffer b = ByteBuffer.wrap(bytes);
            long pos = offset;
            while (b.hasRemaining()) {
                pos += ch.write(b, pos);
            }
        }
    }

    int bitmapTableSize(Bitmap m) {
        long bits = (size + (1L << m.granularityBits) - 1) >>> m.granularityBits;
        long bytes = (bits + 7) / 8;
        return (int) Math.max(1, (bytes + clusterSize() - 1) >>> clusterBits);
    }

    private static byte[] featureNames() {
        String[][] names = {{"0", "0", "dirty bit"}, {"0", "1", "corrupt bit"}, {"0", "2", "external data file"},
            {"0", "3", "compression type"}, {"0", "4", "extended L2 entries"}, {"1", "0", "lazy refcounts"},
            {"2", "0", "bitmaps"}, {"2", "1", "raw external data"}};
        ByteBuffer b = ByteBuffer.allocate(names.length * 48);
        for (int i = 0; i < names.length; i++) {
            b.put(i * 48, (byte) Integer.parseInt(names[i][0]));
            b.put(i * 48 + 1, (byte) Integer.parseInt(names[i][1]));
            b.put(i * 48 + 2, names[i][2].getBytes(StandardCharsets.US_ASCII));
        }
        return b.array();
    }

    /** Sets entry {@code index} of a refcount block (qcow2-format.md §5.1: sub-byte entries from the LSB). */
    static void setRefcount(byte[] block, int index, int bits, long value) {
        if (bits < 8) {
            int perByte = 8 / bits;
            int shift = (index % perByte) * bits;
            int mask = ((1 << bits) - 1) << shift;
            block[index / perByte] = (byte) ((block[index / perByte] & ~mask) | ((int) value << shift & mask));
        } else {
            int bytes = bits / 8;
            for (int i = 0; i < bytes; i++) {
                block[index * bytes + i] = (byte) (value >>> (8 * (bytes - 1 - i)));
            }
        }
    }

    /** Compresses one cluster with the image's compression type. */
    byte[] compress(byte[] cluster) {
        if (compressionType == 1) {
            return Zstd.compress(cluster, 3);
        }
        return deflate4k(cluster);
    }

    /** Raw deflate whose back-references never exceed 4 KiB: a full flush after every 4 KiB of input. */
    static byte[] deflate4k(byte[] input) {
        Deflater d = new Deflater(Deflater.DEFAULT_COMPRESSION, true);
        try {
            byte[] out = new byte[input.length * 2 + 1024];
            int outLen = 0;
            for (int off = 0; off < input.length; off += 4096) {
                d.setInput(input, off, Math.min(4096, input.length - off));
                int n;
                do {
                    n = d.deflate(out, outLen, out.length - outLen, Deflater.FULL_FLUSH);
                    outLen += n;
                } while (n > 0 && !d.needsInput());
            }
            d.finish();
            while (!d.finished()) {
                outLen += d.deflate(out, outLen, out.length - outLen);
            }
            return Arrays.copyOf(out, outLen);
        } finally {
            d.end();
        }
    }

    /** Calls {@code action(clusterIndex, subclusterMask)} for each cluster in the aligned range. */
    private void forEachUnit(long offset, long length, UnitAction action) {
        checkRange(offset, length);
        int cs = clusterSize();
        int unit = extendedL2 ? cs / 32 : cs;
        long end = offset + length;
        if (offset % unit != 0 || (end % unit != 0 && end != size)) {
            throw new IllegalArgumentException("range [" + offset + ", " + end + ") not aligned to " + unit);
        }
        long pos = offset;
        while (pos < end) {
            long index = pos >>> clusterBits;
            long clusterEnd = (index + 1) << clusterBits;
            long stop = Math.min(end, clusterEnd);
            long mask = -1L >>> 32;
            if (extendedL2) {
                int first = (int) ((pos - (index << clusterBits)) / unit);
                int last = (int) ((stop - 1 - (index << clusterBits)) / unit);
                mask = 0;
                for (int i = first; i <= last; i++) {
                    mask |= 1L << i;
                }
                if (stop == end && end == size && end % cs != 0) {
                    // The disk ends inside this cluster: the subclusters past the end go with it.
                    for (int i = last + 1; i < 32; i++) {
                        mask |= 1L << i;
                    }
                }
            }
            action.apply(index, mask);
            pos = stop;
        }
    }

    @FunctionalInterface
    private interface UnitAction {
        void apply(long clusterIndex, long subclusterMask);
    }

    private void checkRange(long offset, long length) {
        if (offset < 0 || length < 0 || offset + length > size) {
            throw new IllegalArgumentException("range " + offset + "+" + length + " outside " + size);
        }
    }
}
