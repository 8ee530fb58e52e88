package dev.shear.qcow2;

import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * An {@link ImageFile} double for crash tests (Lucene MockDirectoryWrapper): reads see every write (the
 * page cache), and every write and sync is logged, so that the file as it could be on disk after a
 * power loss at any point of the log can be rebuilt afterwards: everything before the last sync that
 * precedes the crash point, plus — per {@link Mode} — none, a prefix, a random subset, or a prefix with
 * a torn last write of the writes issued since.
 *
 * <p>Optionally runs out of space: once {@link #failAfterBytes} bytes have been written, the write
 * that crosses the budget writes its first part and throws "No space left on device".
 */
public final class CrashingImageFile implements ImageFile {
    /** What happens to the writes issued after the last sync before the crash. */
    public enum Mode {
        /** None of them reached the disk. */
        DROP,
        /** All of them did (the crash came just before the next sync). */
        KEEP,
        /** The first ones did, in order. */
        PREFIX,
        /** Any subset did (the disk reordered them). */
        RANDOM_SUBSET,
        /** A prefix did, and the next one only in part: a random subset of its 512-byte sectors. */
        TORN
    }

    private record Op(long position, byte[] data) {
        boolean isSync() {
            return data == null;
        }
    }

    private final Path path;
    private final byte[] initial;
    private byte[] current;                               // guarded by this
    private final List<Op> log = new ArrayList<>();       // guarded by this
    private long budget = Long.MAX_VALUE;                 // guarded by this

    public CrashingImageFile(Path path, byte[] initial) {
        this.path = path;
        this.initial = initial.clone();
        this.current = initial.clone();
    }

    /** Writes fail with ENOSPC once {@code bytes} more bytes have been written. */
    public synchronized void failAfterBytes(long bytes) {
        budget = bytes;
    }

    /** Number of logged operations (writes and syncs) so far: a crash point is an index up to this. */
    public synchronized int logSize() {
        return log.size();
    }

    /** Log indices of the syncs. */
    public synchronized List<Integer> syncPoints() {
        List<Integer> out = new ArrayList<>();
        for (int i = 0; i < log.size(); i++) {
            if (log.get(i).isSync()) {
                out.add(i);
            }
        }
        return out;
    }

    /** The current contents (every write applied). */
    public synchronized byte[] contents() {
        return current.clone();
    }

    /**
     * The file as a crash before log entry {@code crashPoint} could leave it (entries at or after it never
     * happened).
     */
    public synchronized byte[] crashImage(int crashPoint, Mode mode, SplittableRandom rnd) {
        int lastSync = -1;
        for (int i = 0; i < crashPoint; i++) {
            if (log.get(i).isSync()) {
                lastSync = i;
            }
        }
        byte[] disk = initial.clone();
        for (int i = 0; i <= lastSync; i++) {
            disk = apply(disk, log.get(i), null);
        }
        List<Op> pending = new ArrayList<>(log.subList(lastSync + 1, crashPoint));
        switch (mode) {
            case DROP -> pending.clear();
            case KEEP -> { }
            case PREFIX -> pending = pending.subList(0, pending.isEmpty() ? 0 : rnd.nextInt(pending.size() + 1));
            case RANDOM_SUBSET -> pending.removeIf(op -> rnd.nextBoolean());
            case TORN -> {
                int keep = pending.isEmpty() ? 0 : rnd.nextInt(pending.size());
                List<Op> p = new ArrayList<>(pending.subList(0, keep));
                if (keep < pending.size()) {
                    disk = applyAll(disk, p);
                    return apply(disk, pending.get(keep), rnd);
                }
                pending = p;
            }
        }
        return applyAll(disk, pending);
    }

    private static byte[] applyAll(byte[] disk, List<Op> ops) {
        byte[] d = disk;
        for (Op op : ops) {
            d = apply(d, op, null);
        }
        return d;
    }

    /** Applies a write; with {@code tear}, only a random subset of its 512-byte sectors. */
    private static byte[] apply(byte[] disk, Op op, SplittableRandom tear) {
        if (op.isSync()) {
            return disk;
        }
        int end = (int) op.position() + op.data().length;
        byte[] d = end > disk.length ? Arrays.copyOf(disk, end) : disk;
        for (int s = 0; s < op.data().length; s += 512) {
            if (tear != null && tear.nextBoolean()) {
                continue;
            }
            int n = Math.min(512, op.data().length - s);
            System.arraycopy(op.data(), s, d, (int) op.position() + s, n);
        }
        return d;
    }

    @Override
    public Path path() {
        return path;
    }

    @Override
    public boolean isWritable() {
        return true;
    }

    @Override
    public synchronized void read(long position, ByteBuffer dst) {
        if (position < current.length) {
            int n = (int) Math.min(dst.remaining(), current.length - position);
            dst.put(current, (int) position, n);
        }
        while (dst.hasRemaining()) {
            dst.put((byte) 0);
        }
    }

    @Override
    public synchronized void write(long position, ByteBuffer src) throws IOException {
        int n = src.remaining();
        boolean fail = n > budget;
        if (fail) {
            n = (int) budget;
        }
        byte[] data = new byte[n];
        src.get(data);
        budget -= n;
        if (n > 0) {
            log.add(new Op(position, data));
            int end = (int) position + n;
            if (end > current.length) {
                current = Arrays.copyOf(current, end);
            }
            System.arraycopy(data, 0, current, (int) position, n);
        }
        if (fail) {
            throw new IOException("No space left on device");
        }
    }

    @Override
    public synchronized void sync() {
        log.add(new Op(-1, null));
    }

    @Override
    public synchronized long size() {
        return current.length;
    }

    @Override
    public synchronized void truncate(long size) {
        current = Arrays.copyOf(current, (int) size);
        log.add(new Op(size, new byte[0]));   // length change only: modelled as an empty write
    }

    @Override
    public FileChannel channel() {
        return null;
    }

    @Override
    public void close() {
    }
}
