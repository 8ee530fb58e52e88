package dev.shear.fleece.scratch;

import dev.shear.block.BlockDevice;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFormat;
import dev.shear.block.Zeros;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2CreateOptions;
import dev.shear.qcow2.Qcow2Creator;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A {@link ScratchTarget} over a sparse qcow2 image (design.md §The block graph: "qcow2 file or
 * compressed spill store"): cluster {@code i} of the snapshot lives at guest offset
 * {@code i × clusterSize} of the scratch image, so the scratch can be inspected with {@code qemu-img}
 * while the snapshot lives. The image is created with {@link Qcow2Creator} (virtual size = the device
 * size rounded up to the copy granularity, qcow2 cluster size = the copy granularity capped at 2 MiB)
 * and deleted at close, whether it was a temporary file or a path the user named.
 *
 * <p>Zero clusters are recorded in the index only (nothing written). {@link #remove} discards the
 * cluster in the image so its space returns to the qcow2 free list. Concurrency: the index is a
 * concurrent map; the qcow2 engine serializes its own metadata; per-cluster ordering is the caller's
 * (see {@link ScratchTarget}).
 */
public final class Qcow2Scratch implements ScratchTarget {
    /** qcow2's largest cluster: a copy granularity above it spans several qcow2 clusters. */
    private static final int MAX_QCOW2_CLUSTER = 2 << 20;

    private final Path path;
    private final BlockDevice image;
    private final int clusterSize;
    private final long capacityBytes;
    /** Cluster index → true when the copy is all zeros (not written). */
    private final Map<Long, Boolean> index = new ConcurrentHashMap<>();
    private final AtomicLong dataClusters = new AtomicLong();
    /** Set once by close. */
    private volatile boolean closed;

    private Qcow2Scratch(Path path, BlockDevice image, int clusterSize, long capacityBytes) {
        this.path = path;
        this.image = image;
        this.clusterSize = clusterSize;
        this.capacityBytes = capacityBytes;
    }

    /**
     * Creates {@code file} (which must not exist) as the scratch of a device of {@code deviceSize}
     * bytes copied at {@code clusterSize} granularity.
     *
     * @param capacityBytes most bytes of data the scratch may hold, or {@link Long#MAX_VALUE}
     */
    public static Qcow2Scratch create(Path file, long deviceSize, int clusterSize, long capacityBytes)
            throws IOException {
        Objects.requireNonNull(file, "file");
        if (clusterSize <= 0 || Integer.bitCount(clusterSize) != 1) {
            throw new IllegalArgumentException("clusterSize: " + clusterSize + " (expected: a power of two)");
        }
        if (capacityBytes < 0) {
            throw new IllegalArgumentException("capacityBytes: " + capacityBytes + " (expected: >= 0)");
        }
        if (Files.exists(file)) {
            throw BlockException.invalid(file.toString(), -1, "scratch: file exists (expected: a new path)");
        }
        long clusters = (deviceSize + clusterSize - 1) / clusterSize;
        long virtualSize = Math.max(512, clusters * clusterSize);
        int qcowCluster = Math.max(512, Math.min(MAX_QCOW2_CLUSTER, clusterSize));
        Qcow2CreateOptions o = Qcow2CreateOptions.defaults(virtualSize);
        o = new Qcow2CreateOptions(o.sizeBytes(), qcowCluster, o.version(), o.compressionType(), o.extendedL2(),
                o.lazyRefcounts(), o.refcountBits(), o.preallocation(), null, null);
        Qcow2Creator.create(file, o);
        BlockDevice dev;
        try {
            dev = Images.open(file, ImageFormat.QCOW2, false, null);
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(file);
            throw e;
        }
        return new Qcow2Scratch(file, dev, clusterSize, capacityBytes);
    }

    /** Creates the scratch as a new temporary file in {@code dir}. */
    public static Qcow2Scratch createTemp(Path dir, long deviceSize, int clusterSize, long capacityBytes)
            throws IOException {
        Path file = Files.createTempFile(dir, "shear-scratch-", ".qcow2");
        Files.delete(file);
        return create(file, deviceSize, clusterSize, capacityBytes);
    }

    public Path path() {
        return path;
    }

    @Override
    public String name() {
        return path.toString();
    }

    @Override
    public void put(long clusterIndex, ByteBuffer src) throws IOException {
        checkOpen();
        if (Zeros.isZero(src)) {
            Boolean old = index.put(clusterIndex, Boolean.TRUE);
            if (Boolean.FALSE.equals(old)) {
                image.discard(offsetOf(clusterIndex), clusterSize, 0);
                dataClusters.decrementAndGet();
            }
            src.position(src.limit());
            return;
        }
        Boolean old = index.get(clusterIndex);
        if (!Boolean.FALSE.equals(old)) {
            long used = dataClusters.get() * clusterSize;
            if (used + clusterSize > capacityBytes) {
                throw new BlockException(BlockErrorKind.NO_SPACE, name(), offsetOf(clusterIndex),
                        String.format("scratch: %d bytes used + %d (expected: <= capacity %d)", used, clusterSize,
                                capacityBytes));
            }
        }
        image.write(offsetOf(clusterIndex), src, 0);
        if (!Boolean.FALSE.equals(index.put(clusterIndex, Boolean.FALSE))) {
            dataClusters.incrementAndGet();
        }
    }

    @Override
    public void get(long clusterIndex, int offsetInCluster, ByteBuffer dst) throws IOException {
        checkOpen();
        Boolean zero = index.get(clusterIndex);
        if (zero == null) {
            throw new BlockException(BlockErrorKind.IO, name(), offsetOf(clusterIndex), "scratch: cluster "
                    + clusterIndex + " not stored (expected: a cluster put before)");
        }
        if (zero) {
            while (dst.hasRemaining()) {
                dst.put((byte) 0);
            }
            return;
        }
        image.read(offsetOf(clusterIndex) + offsetInCluster, dst);
    }

    @Override
    public boolean isZero(long clusterIndex) {
        return Boolean.TRUE.equals(index.get(clusterIndex));
    }

    @Override
    public void remove(long clusterIndex) throws IOException {
        Boolean old = index.remove(clusterIndex);
        if (Boolean.FALSE.equals(old)) {
            dataClusters.decrementAndGet();
            if (!closed) {
                long off = offsetOf(clusterIndex);
                image.discard(off, Math.min(clusterSize, image.size() - off), 0);
            }
        }
    }

    @Override
    public long usedBytes() {
        return dataClusters.get() * clusterSize;
    }

    @Override
    public long capacityBytes() {
        return capacityBytes;
    }

    @Override
    public long storedClusters() {
        return index.size();
    }

    @Override
    public synchronized void close() throws IOException {
        if (closed) {
            return;
        }
        closed = true;
        index.clear();
        dataClusters.set(0);
        try {
            image.close();
        } finally {
            Files.deleteIfExists(path);
        }
    }

    @Override
    public String toString() {
        return "Qcow2Scratch[" + path + ", cluster=" + clusterSize + "]";
    }

    private long offsetOf(long clusterIndex) {
        return clusterIndex * clusterSize;
    }

    private void checkOpen() throws BlockException {
        if (closed) {
            throw new BlockException(BlockErrorKind.SHUTDOWN, name(), -1, "scratch: closed");
        }
    }
}
