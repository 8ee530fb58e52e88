package dev.shear.bitmap;

import java.util.Objects;
import org.roaringbitmap.RoaringBitmap;

/**
 * A dirty bitmap in memory: one bit per {@code granularity} bytes of a virtual disk of
 * {@code sizeBytes}, set when any byte of that granule was written (dirty-bitmaps.md §1; QEMU
 * BdrvDirtyBitmap over an HBitmap).
 *
 * <h2>Representation</h2>
 * A 32-bit {@link RoaringBitmap} of chunk indices (chunk {@code i} covers guest bytes
 * {@code [i * g, (i + 1) * g)}), read as unsigned ints. That covers {@value #MAX_CHUNKS_TEXT} chunks,
 * exactly what QEMU can persist: a stored bitmap holds at most 512 MiB of data (BME_MAX_PHYS_SIZE),
 * i.e. 2^32 bits. At 64 KiB granularity that is 256 TiB of disk, at 512 B 2 TiB. A 16 TiB disk at
 * 512 B (2^35 chunks) is refused at creation, as QEMU refuses to store it; pick a coarser granularity.
 * Roaring64Bitmap would lift the bound but its ART index costs more per mark and per scan, and a
 * bitmap that QEMU cannot store is of no use for an incremental backup chain.
 *
 * <h2>Invariants</h2>
 * <ul>
 *   <li>every value in {@link #chunks} is below {@link #chunkCount()} (marks are range-checked);</li>
 *   <li>runs handed to callers are contiguous, in order, clipped to the asked range and, inside it,
 *       granularity-aligned (a partial first or last granule starts or ends at the range's edge);</li>
 *   <li>walks cost O(runs x log(containers)), never O(size): they hop with nextValue/nextAbsentValue.</li>
 * </ul>
 *
 * <h2>Concurrency</h2>
 * All access to the Roaring bitmap happens under {@link #lock}, a leaf lock held for O(1) container
 * operations by {@link #mark} (the write path) and for at most {@link #RUN_BATCH} runs by a walk, whose
 * sink is called with the lock released: a sink may call back into this bitmap, and a long block
 * status never stalls writers. A walk that races with marks sees each run as it was when its batch
 * was taken. {@link #mark} does not look at {@link #isEnabled()}: recording only into enabled bitmaps
 * is {@link DirtyTracker}'s job (merges into a disabled bitmap are legal, as in QEMU).
 */
public final class DirtyBitmap {
    /** QEMU BME_MIN_GRANULARITY_BITS: 512 bytes. */
    public static final int MIN_GRANULARITY_BITS = 9;
    /** QEMU BME_MAX_GRANULARITY_BITS: 2 GiB. */
    public static final int MAX_GRANULARITY_BITS = 31;
    /** Unsigned 32-bit chunk indices; also QEMU's stored limit (512 MiB of bitmap data = 2^32 bits). */
    public static final long MAX_CHUNKS = 1L << 32;
    static final String MAX_CHUNKS_TEXT = "2^32";
    /** Runs computed per lock hold during a walk (bounds writer stalls; 4 KiB of stack arrays). */
    static final int RUN_BATCH = 256;

    /** Receives runs of equal dirtiness over guest bytes, in order, without gaps. */
    @FunctionalInterface
    public interface RunSink {
        /** @return false to stop the walk */
        boolean accept(long offset, long length, boolean dirty);
    }

    private final String name;
    private final long sizeBytes;
    private final int granularityBits;
    private final long chunkCount;
    private final boolean persistent;
    private volatile boolean enabled;

    /** Guards {@link #chunks}. Leaf: nothing else is locked while holding it. */
    private final Object lock = new Object();
    /** Dirty chunk indices, unsigned. Guarded by {@link #lock}. */
    private RoaringBitmap chunks;

    private DirtyBitmap(String name, long sizeBytes, int granularityBits, boolean enabled, boolean persistent,
            RoaringBitmap chunks) {
        this.name = Objects.requireNonNull(name, "name");
        if (sizeBytes < 0) {
            throw new IllegalArgumentException("bitmap '" + name + "': size: " + sizeBytes + " (expected: >= 0)");
        }
        if (granularityBits < MIN_GRANULARITY_BITS || granularityBits > MAX_GRANULARITY_BITS) {
            throw new IllegalArgumentException("bitmap '" + name + "': granularity: 2^" + granularityBits
                    + " (expected: 2^" + MIN_GRANULARITY_BITS + "..2^" + MAX_GRANULARITY_BITS + ", 512 B..2 GiB)");
        }
        long count = chunksFor(sizeBytes, granularityBits);
        if (count > MAX_CHUNKS) {
            throw new IllegalArgumentException("bitmap '" + name + "': " + count + " chunks for size " + sizeBytes
                    + " at granularity " + (1L << granularityBits) + " (expected: <= 2^32, what qcow2 can store; use "
                    + "granularity >= " + minGranularity(sizeBytes) + ")");
        }
        this.sizeBytes = sizeBytes;
        this.granularityBits = granularityBits;
        this.chunkCount = count;
        this.enabled = enabled;
        this.persistent = persistent;
        this.chunks = chunks;
    }

    /**
     * A new, clean bitmap.
     *
     * @param granularity bytes per bit: a power of two, 512 B .. 2 GiB
     * @throws IllegalArgumentException for a bad granularity or more than 2^32 chunks
     */
    public static DirtyBitmap create(String name, long sizeBytes, long granularity, boolean enabled,
            boolean persistent) {
        if (granularity <= 0 || Long.bitCount(granularity) != 1) {
            throw new IllegalArgumentException("bitmap '" + name + "': granularity: " + granularity
                    + " (expected: a power of two, 512..2147483648)");
        }
        return new DirtyBitmap(name, sizeBytes, Long.numberOfTrailingZeros(granularity), enabled, persistent,
                new RoaringBitmap());
    }

    /** Wraps chunk indices already read (the codec); takes ownership of {@code chunks}. */
    static DirtyBitmap wrap(String name, long sizeBytes, int granularityBits, boolean enabled, boolean persistent,
            RoaringBitmap chunks) {
        DirtyBitmap b = new DirtyBitmap(name, sizeBytes, granularityBits, enabled, persistent, chunks);
        if (!chunks.isEmpty() && Integer.toUnsignedLong(chunks.last()) >= b.chunkCount) {
            throw new IllegalArgumentException("bitmap '" + name + "': chunk " + Integer.toUnsignedLong(chunks.last())
                    + " (expected: < " + b.chunkCount + ")");
        }
        return b;
    }

    /** ceil(size / 2^granularityBits). */
    static long chunksFor(long sizeBytes, int granularityBits) {
        return (sizeBytes >>> granularityBits) + ((sizeBytes & ((1L << granularityBits) - 1)) != 0 ? 1 : 0);
    }

    private static long minGranularity(long sizeBytes) {
        int bits = MIN_GRANULARITY_BITS;
        while (bits < MAX_GRANULARITY_BITS && chunksFor(sizeBytes, bits) > MAX_CHUNKS) {
            bits++;
        }
        return 1L << bits;
    }

    public String name() {
        return name;
    }

    /** The virtual disk size this bitmap covers. */
    public long sizeBytes() {
        return sizeBytes;
    }

    public long granularity() {
        return 1L << granularityBits;
    }

    public int granularityBits() {
        return granularityBits;
    }

    /** Bits in the bitmap: ceil(size / granularity). */
    public long chunkCount() {
        return chunkCount;
    }

    /** True when writes are recorded (qcow2 flag auto). */
    public boolean isEnabled() {
        return enabled;
    }

    public void setEnabled(boolean value) {
        enabled = value;
    }

    /** True when stored in the image at close (qcow2); false for a transient bitmap. */
    public boolean isPersistent() {
        return persistent;
    }

    /**
     * Marks every granule that {@code [offset, offset + length)} touches. The write path: O(1)
     * container work under a leaf lock, no allocation unless a container grows.
     *
     * @throws IndexOutOfBoundsException when the range leaves the disk (the device checked it already)
     */
    public void mark(long offset, long length) {
        if (length == 0) {
            return;
        }
        Objects.checkFromIndexSize(offset, length, sizeBytes);
        long first = offset >>> granularityBits;
        long end = ((offset + length - 1) >>> granularityBits) + 1;
        synchronized (lock) {
            if (end - first == 1) {
                chunks.add((int) first);   // the common 4 KiB write: Roaring's point add skips range setup
            } else {
                chunks.add(first, end);
            }
        }
    }

    /** True when any granule touching {@code [offset, offset + length)} is dirty. */
    public boolean isDirty(long offset, long length) {
        if (length == 0) {
            return false;
        }
        Objects.checkFromIndexSize(offset, length, sizeBytes);
        long first = offset >>> granularityBits;
        long end = ((offset + length - 1) >>> granularityBits) + 1;
        synchronized (lock) {
            return chunks.intersects(first, end);
        }
    }

    /**
     * Dirty bytes as QEMU counts them (query-block {@code count}): dirty granules times granularity,
     * so a dirty last granule counts whole even where it passes the disk end.
     */
    public long dirtyBytes() {
        synchronized (lock) {
            return chunks.getLongCardinality() << granularityBits;
        }
    }

    /** True when no granule is dirty. */
    public boolean isClean() {
        synchronized (lock) {
            return chunks.isEmpty();
        }
    }

    /** Clears every bit (QMP block-dirty-bitmap-clear). */
    public void clear() {
        synchronized (lock) {
            chunks = new RoaringBitmap();
        }
    }

    /**
     * Clears the granules lying wholly inside {@code [offset, offset + length)}: a partial granule at
     * either edge stays dirty, since bytes of it outside the range may have been written (the range is
     * aligned inward; QEMU instead asserts alignment). The disk's last, partial granule counts as whole
     * when the range reaches the disk end.
     */
    public void clear(long offset, long length) {
        Objects.checkFromIndexSize(offset, length, sizeBytes);
        long g = 1L << granularityBits;
        long first = (offset + g - 1) >>> granularityBits;
        long rangeEnd = offset + length;
        long end = rangeEnd == sizeBytes ? chunkCount : rangeEnd >>> granularityBits;
        if (first < end) {
            synchronized (lock) {
                chunks.remove(first, end);
            }
        }
    }

    /**
     * ORs {@code sources} into this bitmap (QMP block-dirty-bitmap-merge). A source of another
     * granularity is mapped through guest bytes, so the coarser side wins: a target granule becomes
     * dirty if any byte of it is dirty in a source. Sizes must match (QEMU: "Bitmaps are incompatible").
     * Each source is copied under its own lock first, so two merges in opposite directions cannot
     * deadlock.
     */
    public void merge(DirtyBitmap... sources) {
        for (DirtyBitmap s : sources) {
            if (s.sizeBytes != sizeBytes) {
                throw new IllegalArgumentException("merge '" + s.name + "' into '" + name + "': size " + s.sizeBytes
                        + " (expected: " + sizeBytes + ", the target's)");
            }
        }
        for (DirtyBitmap s : sources) {
            if (s == this) {
                continue;
            }
            if (s.granularityBits == granularityBits) {
                RoaringBitmap other = s.snapshotChunks();
                synchronized (lock) {
                    chunks.or(other);
                }
            } else {
                s.forEachRun(0, sizeBytes, (off, len, dirty) -> {
                    if (dirty) {
                        mark(off, len);
                    }
                    return true;
                });
            }
        }
    }

    /**
     * A new bitmap with the union of {@code sources} (at least one, equal sizes), at {@code granularity}.
     * What a backup "since checkpoint C" exposes for the older chain model (dirty-bitmaps.md §7.2).
     */
    public static DirtyBitmap union(String name, long granularity, DirtyBitmap... sources) {
        if (sources.length == 0) {
            throw new IllegalArgumentException("union '" + name + "': no sources (expected: at least one)");
        }
        DirtyBitmap out = create(name, sources[0].sizeBytes, granularity, false, false);
        out.merge(sources);
        return out;
    }

    /** An independent copy with the same bits (a frozen view for an export, or a successor). */
    public DirtyBitmap copy(String newName, boolean newEnabled, boolean newPersistent) {
        return new DirtyBitmap(newName, sizeBytes, granularityBits, newEnabled, newPersistent, snapshotChunks());
    }

    /** A copy of the chunk indices, taken under the lock (for the codec and merges). */
    RoaringBitmap snapshotChunks() {
        synchronized (lock) {
            return chunks.clone();
        }
    }

    /** Only dirty runs of {@link #forEachRun}. */
    public void forEachDirty(long offset, long length, RunSink sink) {
        forEachRun(offset, length, (off, len, dirty) -> !dirty || sink.accept(off, len, true));
    }

    /**
     * Walks {@code [offset, offset + length)} as alternating dirty and clean runs, in order, until
     * covered or the sink returns false. Cost: O(runs), independent of the range's size.
     *
     * <p>On exit every byte of the range was reported exactly once (unless the sink stopped); runs end
     * on granule boundaries except at the range's edges.
     */
    public void forEachRun(long offset, long length, RunSink sink) {
        Objects.checkFromIndexSize(offset, length, sizeBytes);
        long end = offset + length;
        long[] offs = new long[RUN_BATCH];
        long[] ends = new long[RUN_BATCH];
        boolean[] dirt = new boolean[RUN_BATCH];
        long pos = offset;
        while (pos < end) {
            int n = 0;
            synchronized (lock) {
                // Only the batch's first run needs a lookup of its state: runs alternate after it.
                boolean dirty = chunks.contains((int) (pos >>> granularityBits));
                while (pos < end && n < RUN_BATCH) {
                    long chunk = pos >>> granularityBits;
                    long runEndChunk = dirty ? nextAbsent(chunk) : nextPresent(chunk);
                    // runEndChunk <= 2^32 and granularityBits <= 31: the shift cannot overflow.
                    long runEnd = Math.min(end, runEndChunk << granularityBits);
                    offs[n] = pos;
                    ends[n] = runEnd;
                    dirt[n] = dirty;
                    n++;
                    pos = runEnd;
                    dirty = !dirty;
                }
            }
            for (int i = 0; i < n; i++) {
                if (!sink.accept(offs[i], ends[i] - offs[i], dirt[i])) {
                    return;
                }
            }
        }
    }

    /** First clean chunk at or after {@code chunk}; {@link #MAX_CHUNKS} if none. Under the lock. */
    private long nextAbsent(long chunk) {
        long r = chunks.nextAbsentValue((int) chunk);
        return r < 0 ? MAX_CHUNKS : r;
    }

    /** First dirty chunk at or after {@code chunk}; {@link #MAX_CHUNKS} if none. Under the lock. */
    private long nextPresent(long chunk) {
        long r = chunks.nextValue((int) chunk);
        return r < 0 ? MAX_CHUNKS : r;
    }

    @Override
    public String toString() {
        return "DirtyBitmap[name=" + name + ", size=" + sizeBytes + ", granularity=" + granularity() + ", enabled="
                + enabled + ", persistent=" + persistent + ", dirtyBytes=" + dirtyBytes() + "]";
    }
}
