package dev.shear.qcow2;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.WriteFlags;
import dev.shear.block.Zeros;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The guest data path of a writable image: write, write-zeroes and discard, cluster by cluster
 * (qcow2-format.md §6, §10; QEMU qcow2-cluster.c {@code handle_copied}, {@code handle_alloc},
 * {@code perform_cow}, {@code zero_in_l2_slice}, {@code discard_in_l2_slice}).
 *
 * <h2>A write to guest cluster c</h2>
 * <ol>
 *   <li>Take c's lock (a stripe of {@link #STRIPES} locks): writes to one cluster are serialized,
 *       writes to different clusters run in parallel; reads take no guest lock.</li>
 *   <li>Read c's L2 entry under the metadata read lock.</li>
 *   <li><b>In place</b> when the entry is a standard cluster with the copied flag (refcount 1) and,
 *       with extended L2, every touched subcluster is allocated: overlap check, data write, done — no
 *       metadata lock at all.</li>
 *   <li><b>Subclusters</b> (extended L2): an allocated copied cluster, or an unallocated entry, gets only
 *       the touched subclusters written (a new host cluster for the latter), the partial ones completed
 *       from their current content (backing file, zeros); then the bitmap is updated.</li>
 *   <li><b>Whole-cluster copy-on-write</b> otherwise (unallocated or zero without subclusters, shared
 *       with a snapshot, compressed): the untouched part comes from the current guest content (backing
 *       file, zeros, the old cluster, decompressed data) merged with the new bytes into one cluster
 *       written to a newly allocated cluster; then the L2 entry (copied flag set) replaces the old
 *       reference, which is freed once that is durable.</li>
 * </ol>
 * Allocation (metadata write lock, in memory) happens before the data write and the link (metadata
 * write lock) after it, so data I/O runs outside the metadata lock. Runs of whole unallocated clusters
 * are allocated contiguously and written with one write.
 *
 * <h2>Zeroes and discard</h2>
 * Whole clusters are handled in metadata (zero flag in v3, zero bits with extended L2, unallocated in
 * v2 when that reads as zeros); partial clusters that do not already read as zeros are written with
 * zeros. FAST_ZERO fails with NOT_SUPPORTED, before anything changes, when any data write would be
 * needed. Discard acts on whole clusters only: v3 makes them zero clusters (so a backing file never
 * shows through), v2 unallocates them when there is no backing file and leaves them alone otherwise.
 */
final class Qcow2Writer {
    /** Guest cluster lock stripes: enough that unrelated writes rarely share one. */
    static final int STRIPES = 1024;
    /** Most whole clusters allocated and written in one go. */
    private static final int MAX_BATCH = 64;

    private final Qcow2Image image;
    private final MetadataWriter meta;
    private final String resource;
    private final int clusterBits;
    private final int clusterSize;
    private final int subBits;
    private final boolean extendedL2;
    private final int version;
    private final long size;
    private final ReentrantLock[] stripes = new ReentrantLock[STRIPES];
    private final Qcow2CompressedWriter compressed;
    /**
     * Per-thread cluster-sized direct buffer where partial writes are merged with the current content:
     * no allocation per write, and no copy into the JDK's temporary direct buffer on the file write.
     */
    private final ThreadLocal<ByteBuffer> scratch;

    Qcow2Writer(Qcow2Image image, MetadataWriter meta, Qcow2Header header) {
        this.image = image;
        this.meta = meta;
        this.resource = image.name();
        this.clusterBits = header.clusterBits();
        this.clusterSize = 1 << clusterBits;
        this.subBits = clusterBits - 5;
        this.extendedL2 = header.hasExtendedL2();
        this.version = header.version();
        this.size = header.size();
        for (int i = 0; i < STRIPES; i++) {
            stripes[i] = new ReentrantLock();
        }
        this.compressed = new Qcow2CompressedWriter(image, this, meta, header);
        int scratchSize = clusterSize;
        this.scratch = ThreadLocal.withInitial(() -> ByteBuffer.allocateDirect(scratchSize));
    }

    Qcow2CompressedWriter compressed() {
        return compressed;
    }

    /** Takes guest cluster {@code guestCluster}'s lock (also for {@link Qcow2CompressedWriter}). */
    ReentrantLock lockCluster(long guestCluster) {
        ReentrantLock l = stripes[(int) (guestCluster & (STRIPES - 1))];
        l.lock();
        return l;
    }

    // ---- write ----

    void write(long offset, ByteBuffer src, int flags) throws IOException {
        meta.beginWrite();
        long pos = offset;
        long end = offset + src.remaining();
        ByteBuffer in = src.duplicate();
        while (pos < end) {
            long c = pos >>> clusterBits;
            int a = (int) (pos & (clusterSize - 1));
            if (a == 0 && end - pos >= clusterSize) {
                int n = writeFreshRun(c, (int) Math.min(MAX_BATCH, (end - pos) >>> clusterBits), in);
                if (n > 0) {
                    pos += (long) n << clusterBits;
                    continue;
                }
            }
            int len = (int) Math.min(clusterSize - a, end - pos);
            ByteBuffer part = in.slice(in.position(), len);
            in.position(in.position() + len);
            writeInCluster(c, a, part);
            pos += len;
        }
        src.position(src.limit());
        if (WriteFlags.has(flags, WriteFlags.FUA)) {
            meta.flush();
        }
    }

    /**
     * Writes up to {@code max} whole clusters starting at {@code first} that have no host cluster
     * (unallocated or zero-plain) into one contiguous new host run. Returns how many it wrote (0: the
     * first cluster does not qualify).
     */
    private int writeFreshRun(long first, int max, ByteBuffer in) throws IOException {
        if (max < 2) {
            return 0;
        }
        ReentrantLock[] held = new ReentrantLock[max];
        int n = 0;
        try {
            // Locks in ascending stripe order within the run would be needed for more than one stripe
            // wrap; a run of at most MAX_BATCH < STRIPES consecutive clusters takes stripes in a cyclic
            // order, so take them with tryLock beyond the first and stop at the first busy one.
            held[0] = lockCluster(first);
            n = 1;
            if (!freshSlot(first)) {
                return 0;
            }
            while (n < max) {
                ReentrantLock l = stripes[(int) ((first + n) & (STRIPES - 1))];
                if (!l.tryLock()) {
                    break;
                }
                held[n] = l;
                if (!freshSlot(first + n)) {
                    l.unlock();
                    held[n] = null;
                    break;
                }
                n++;
            }
            if (n < 2) {
                return 0;
            }
            long host;
            meta.lock().writeLock().lock();
            try {
                host = meta.allocateData(n);
            } finally {
                meta.lock().writeLock().unlock();
            }
            int bytes = n << clusterBits;
            ByteBuffer data = in.slice(in.position(), bytes);
            meta.checkOverlap(host, bytes);
            meta.writeData(host, data);
            in.position(in.position() + bytes);
            meta.lock().writeLock().lock();
            try {
                for (int i = 0; i < n; i++) {
                    meta.setSlot(first + i, L2Entry.standard(host + ((long) i << clusterBits), true),
                            extendedL2 ? L2Entry.ALL_ALLOC : 0, true, 0, 0);
                }
            } finally {
                meta.lock().writeLock().unlock();
            }
            return n;
        } finally {
            for (int i = 0; i < held.length; i++) {
                if (held[i] != null) {
                    held[i].unlock();
                }
            }
        }
    }

    /** True when guest cluster {@code c} has no host cluster to replace (unallocated, zero-plain). */
    private boolean freshSlot(long c) throws IOException {
        MetadataWriter.Slot s = meta.readSlot(c);
        if (s.problem() != null) {
            return false;   // the per-cluster path reports it
        }
        return !L2Entry.isCompressed(s.entry()) && L2Entry.offset(s.entry()) == 0;
    }

    /** Writes {@code data} at byte {@code a} of guest cluster {@code c} (see the class notes). */
    private void writeInCluster(long c, int a, ByteBuffer data) throws IOException {
        int len = data.remaining();
        ReentrantLock l = lockCluster(c);
        try {
            MetadataWriter.Slot s = slot(c);
            long e = s.entry();
            long bm = s.bitmap();
            ClusterType type = L2Entry.type(e, extendedL2);
            boolean copied = L2Entry.isCopied(e);
            long host = L2Entry.offset(e);
            long base = c << clusterBits;
            if (type == ClusterType.NORMAL && copied) {
                int mask = subMask(a, a + len);
                if (!extendedL2 || (L2Entry.allocMask(bm) & mask) == mask) {
                    meta.checkOverlap(host + a, len);
                    meta.writeData(host + a, data);
                    return;
                }
                int sa = floorSub(a);
                int sb = ceilSub(a + len);
                ByteBuffer buf = fill(base, sa, sb, a, data);
                meta.checkOverlap(host + sa, sb - sa);
                meta.writeData(host + sa, buf);
                long newBm = (bm | (mask & 0xffffffffL)) & ~((long) mask << 32);
                link(c, e, newBm, 0, 0);
                return;
            }
            if (extendedL2 && type == ClusterType.UNALLOCATED) {
                long fresh = allocate();
                int sa = floorSub(a);
                int sb = ceilSub(a + len);
                int mask = subMask(a, a + len);
                ByteBuffer buf = fill(base, sa, sb, a, data);
                meta.checkOverlap(fresh + sa, sb - sa);
                meta.writeData(fresh + sa, buf);
                long zeros = (long) (L2Entry.zeroMask(bm) & ~mask) << 32;
                link(c, L2Entry.standard(fresh, true), zeros | (mask & 0xffffffffL), 0, 0);
                return;
            }
            boolean reuse = !extendedL2 && type == ClusterType.ZERO_ALLOC && copied;
            long target = reuse ? host : allocate();
            ByteBuffer buf = fill(base, 0, clusterSize, a, data);
            meta.checkOverlap(target, clusterSize);
            meta.writeData(target, buf);
            long freeOffset = 0;
            long freeLength = 0;
            if (!reuse) {
                if (type == ClusterType.COMPRESSED) {
                    freeOffset = L2Entry.compressedRangeStart(e, clusterBits);
                    freeLength = L2Entry.compressedRangeLength(e, clusterBits);
                } else if (host != 0) {
                    freeOffset = host;
                    freeLength = clusterSize;
                }
            }
            link(c, L2Entry.standard(target, true), extendedL2 ? L2Entry.ALL_ALLOC : 0, freeOffset, freeLength);
        } finally {
            l.unlock();
        }
    }

    /** The entry of {@code c}; a malformed one signals corruption (outside the read lock). */
    private MetadataWriter.Slot slot(long c) throws IOException {
        MetadataWriter.Slot s = meta.readSlot(c);
        if (s.problem() != null) {
            throw meta.corrupt(c << clusterBits, s.problem());
        }
        return s;
    }

    private long allocate() throws IOException {
        meta.lock().writeLock().lock();
        try {
            return meta.allocateData(1);
        } finally {
            meta.lock().writeLock().unlock();
        }
    }

    private void link(long c, long entry, long bitmap, long freeOffset, long freeLength) throws IOException {
        setSlot(c, entry, bitmap, true, freeOffset, freeLength);
    }

    private void setSlot(long c, long entry, long bitmap, boolean newData, long freeOffset, long freeLength)
            throws IOException {
        meta.lock().writeLock().lock();
        try {
            meta.setSlot(c, entry, bitmap, newData, freeOffset, freeLength);
        } finally {
            meta.lock().writeLock().unlock();
        }
    }

    /**
     * The bytes [from, to) of the guest cluster at {@code base}: {@code data} at {@code a}, the rest
     * from the current content (bounded by the disk size; zeros past it). When {@code data} covers the
     * whole range it is returned as it is; otherwise the merge goes to this thread's scratch buffer,
     * valid until the thread's next call (the caller writes it out before returning).
     */
    private ByteBuffer fill(long base, int from, int to, int a, ByteBuffer data) throws IOException {
        if (a == from && data.remaining() == to - from) {
            return data;
        }
        ByteBuffer buf = scratch.get().slice(0, to - from);
        readCurrent(base + from, buf.slice(0, a - from));
        int after = a + data.remaining();
        readCurrent(base + after, buf.slice(after - from, to - after));
        buf.put(a - from, data, data.position(), data.remaining());
        return buf;
    }

    private void readCurrent(long guestOffset, ByteBuffer dst) throws IOException {
        if (!dst.hasRemaining()) {
            return;
        }
        int inside = (int) Math.max(0, Math.min(dst.remaining(), size - guestOffset));
        if (inside > 0) {
            image.read(guestOffset, dst.slice(0, inside));
        }
    }

    private int floorSub(int a) {
        return extendedL2 ? (a >>> subBits) << subBits : 0;
    }

    private int ceilSub(int b) {
        return extendedL2 ? ((b + (1 << subBits) - 1) >>> subBits) << subBits : clusterSize;
    }

    /** Subcluster bits touched by [a, b) (b > a); 0 without extended L2. */
    private int subMask(int a, int b) {
        if (!extendedL2) {
            return 0;
        }
        int first = a >>> subBits;
        int last = (b - 1) >>> subBits;
        long bits = ((1L << (last + 1)) - 1) & ~((1L << first) - 1);
        return (int) bits;
    }

    // ---- write zeroes ----

    void writeZeroes(long offset, long length, int flags) throws IOException {
        meta.beginWrite();
        boolean mayUnmap = !WriteFlags.has(flags, WriteFlags.NO_HOLE);
        if (WriteFlags.has(flags, WriteFlags.FAST_ZERO) && zeroesNeedDataWrites(offset, length, mayUnmap)) {
            throw new BlockException(BlockErrorKind.NOT_SUPPORTED, resource, offset,
                    "write zeroes with FAST_ZERO: this range needs data writes (expected: whole clusters, or "
                            + "parts that already read as zeros)");
        }
        long pos = offset;
        long end = offset + length;
        while (pos < end) {
            long c = pos >>> clusterBits;
            int a = (int) (pos & (clusterSize - 1));
            int b = (int) Math.min(clusterSize, end - (c << clusterBits));
            zeroPiece(c, a, b, mayUnmap, false);
            pos = (c << clusterBits) + b;
        }
        if (WriteFlags.has(flags, WriteFlags.FUA)) {
            meta.flush();
        }
    }

    private boolean zeroesNeedDataWrites(long offset, long length, boolean mayUnmap) throws IOException {
        long pos = offset;
        long end = offset + length;
        while (pos < end) {
            long c = pos >>> clusterBits;
            int a = (int) (pos & (clusterSize - 1));
            int b = (int) Math.min(clusterSize, end - (c << clusterBits));
            if (zeroPiece(c, a, b, mayUnmap, true)) {
                return true;
            }
            pos = (c << clusterBits) + b;
        }
        return false;
    }

    /** True when [a, b) of cluster c ends at the disk's end or the cluster's end. */
    private boolean coversToEnd(long c, int b) {
        return b == clusterSize || (c << clusterBits) + b == size;
    }

    /**
     * Zeroes [a, b) of guest cluster c. With {@code dryRun} changes nothing and returns whether data
     * writes would be needed.
     */
    private boolean zeroPiece(long c, int a, int b, boolean mayUnmap, boolean dryRun) throws IOException {
        long base = c << clusterBits;
        boolean whole = a == 0 && coversToEnd(c, b);
        if (whole && version >= 3) {
            if (!dryRun) {
                zeroWholeV3(c, mayUnmap);
            }
            return false;
        }
        if (whole && mayUnmap && !backingUnder(base)) {
            if (!dryRun) {
                unallocate(c);   // v2: unallocated reads as zeros here
            }
            return false;
        }
        if (extendedL2 && !whole) {
            int sa = ceilSub(a);
            int sb = coversToEnd(c, b) ? ceilSub(b) : floorSub(b);
            MetadataWriter.Slot s = slot(c);
            if (sa < sb && !L2Entry.isCompressed(s.entry())) {
                boolean head = a < sa && zeroData(c, a, sa, dryRun);
                boolean tail = sb < b && zeroData(c, sb, b, dryRun);
                if (!dryRun) {
                    zeroSubclusters(c, sa, sb);
                }
                return head || tail;
            }
        }
        return zeroData(c, a, b, dryRun);
    }

    /** Writes zeros over [a, b) of cluster c unless it already reads as zeros. */
    private boolean zeroData(long c, int a, int b, boolean dryRun) throws IOException {
        long base = c << clusterBits;
        int n = (int) Math.min(b - a, size - base - a);
        if (n <= 0) {
            return false;
        }
        ByteBuffer current = ByteBuffer.allocate(n);
        image.read(base + a, current);
        if (Zeros.isZero(current.array(), 0, n)) {
            return false;
        }
        if (!dryRun) {
            writeInCluster(c, a, ByteBuffer.allocate(n));
        }
        return true;
    }

    /** QEMU zero_in_l2_slice for one cluster (v3). */
    private void zeroWholeV3(long c, boolean mayUnmap) throws IOException {
        ReentrantLock l = lockCluster(c);
        try {
            MetadataWriter.Slot s = slot(c);
            long e = s.entry();
            ClusterType type = L2Entry.type(e, extendedL2);
            boolean allocated = type == ClusterType.NORMAL || type == ClusterType.ZERO_ALLOC;
            boolean unmap = type == ClusterType.COMPRESSED || (mayUnmap && allocated);
            long ne;
            long nb;
            if (extendedL2) {
                ne = unmap ? 0 : e;
                nb = L2Entry.ALL_ZEROES;
            } else {
                ne = (unmap ? 0 : e) | L2Entry.ZERO;
                nb = 0;
            }
            if (ne == e && nb == s.bitmap()) {
                return;
            }
            long[] free = unmap ? hostRange(e) : new long[2];
            setSlot(c, ne, nb, false, free[0], free[1]);
        } finally {
            l.unlock();
        }
    }

    /** Sets the zero bits (clearing the allocation bits) of subclusters [sa, sb) of cluster c. */
    private void zeroSubclusters(long c, int sa, int sb) throws IOException {
        ReentrantLock l = lockCluster(c);
        try {
            MetadataWriter.Slot s = slot(c);
            if (L2Entry.isCompressed(s.entry())) {
                throw new IllegalStateException("compressed cluster reached the subcluster path");
            }
            long mask = subMask(sa, sb) & 0xffffffffL;
            long nb = (s.bitmap() & ~mask) | (mask << 32);
            if (nb != s.bitmap()) {
                setSlot(c, s.entry(), nb, false, 0, 0);
            }
        } finally {
            l.unlock();
        }
    }

    /** Makes cluster c unallocated (v2 zeroes without a backing file underneath; discard). */
    private void unallocate(long c) throws IOException {
        ReentrantLock l = lockCluster(c);
        try {
            MetadataWriter.Slot s = slot(c);
            if (s.entry() == 0 && s.bitmap() == 0) {
                return;
            }
            long[] free = hostRange(s.entry());
            setSlot(c, 0, 0, false, free[0], free[1]);
        } finally {
            l.unlock();
        }
    }

    /** The host range an entry holds a reference to: {offset, length}, length 0 for none. */
    private long[] hostRange(long e) {
        if (L2Entry.isCompressed(e)) {
            return new long[] {L2Entry.compressedRangeStart(e, clusterBits), L2Entry.compressedRangeLength(e,
                    clusterBits)};
        }
        long host = L2Entry.offset(e);
        return host == 0 ? new long[2] : new long[] {host, clusterSize};
    }

    /** True when the backing file has bytes under the cluster at {@code base}. */
    private boolean backingUnder(long base) {
        return image.backing() != null && base < image.backing().size();
    }

    // ---- discard ----

    void discard(long offset, long length, int flags) throws IOException {
        meta.beginWrite();
        long first = (offset + clusterSize - 1) >>> clusterBits;
        long endCluster = (offset + length) >>> clusterBits;
        if (offset + length == size && (size & (clusterSize - 1)) != 0 && (endCluster << clusterBits) >= offset) {
            endCluster++;   // the partial last cluster counts as whole when the range reaches the end
        }
        for (long c = first; c < endCluster; c++) {
            discardCluster(c);
        }
        if (WriteFlags.has(flags, WriteFlags.FUA)) {
            meta.flush();
        }
    }

    /** QEMU discard_in_l2_slice (not a full discard) for one cluster. */
    private void discardCluster(long c) throws IOException {
        boolean backing = backingUnder(c << clusterBits);
        if (version < 3) {
            if (!backing) {
                unallocate(c);
            }
            return;   // v2 over a backing file: leave the data (unallocating would show the backing file)
        }
        ReentrantLock l = lockCluster(c);
        try {
            MetadataWriter.Slot s = slot(c);
            long e = s.entry();
            ClusterType type = L2Entry.type(e, extendedL2);
            boolean hasHost = type == ClusterType.NORMAL || type == ClusterType.ZERO_ALLOC
                    || type == ClusterType.COMPRESSED;
            if (!backing && !hasHost) {
                return;
            }
            long ne = extendedL2 ? 0 : L2Entry.ZERO;
            long nb = extendedL2 ? L2Entry.ALL_ZEROES : 0;
            if (ne == e && nb == s.bitmap()) {
                return;
            }
            long[] free = hostRange(e);
            setSlot(c, ne, nb, false, free[0], free[1]);
        } finally {
            l.unlock();
        }
    }

    // ---- preallocation ----

    /** See {@link Qcow2Image#preallocate}: runs of up to {@link #MAX_BATCH} clusters, allocated contiguously. */
    void preallocate(boolean full) throws IOException {
        meta.beginWrite();
        long clusters = (size + clusterSize - 1) >>> clusterBits;
        long end = 0;
        for (long c = 0; c < clusters; ) {
            int n = (int) Math.min(MAX_BATCH, clusters - c);
            long host;
            meta.lock().writeLock().lock();
            try {
                host = meta.allocateData(n);
            } finally {
                meta.lock().writeLock().unlock();
            }
            if (full) {
                meta.writeData(host, ByteBuffer.allocate(n << clusterBits));
            }
            meta.lock().writeLock().lock();
            try {
                for (int i = 0; i < n; i++) {
                    meta.setSlot(c + i, L2Entry.standard(host + ((long) i << clusterBits), true),
                            extendedL2 ? L2Entry.ALL_ALLOC : 0, full, 0, 0);
                }
            } finally {
                meta.lock().writeLock().unlock();
            }
            end = Math.max(end, host + ((long) n << clusterBits));
            c += n;
        }
        meta.flush();
        if (image.file().size() < end) {
            image.file().truncate(end);   // unwritten data clusters read as zeros
            image.file().sync();
        }
    }
}
