package dev.shear.bitmap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import dev.shear.qcow2.BitmapsExtension;
import dev.shear.qcow2.Qcow2Header;
import dev.shear.qcow2.bitmap.BitmapDirectoryEntry;
import dev.shear.qcow2.bitmap.BitmapTable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link PersistentBitmaps#store} through a fake {@link BitmapStorage} over a real file, then
 * {@link PersistentBitmaps#load} of the result: the close-time protocol (dirty-bitmaps.md §4.3), the
 * in_use rule (§4.1) and the freeing of replaced clusters (only leaks may survive a crash, none here).
 */
class PersistentBitmapsTest {
    private static final long SEED = Long.getLong("shear.seed", System.nanoTime());
    private static final int CLUSTER_BITS = 12;
    private static final int CLUSTER = 1 << CLUSTER_BITS;
    private static final long SIZE = 3L << 30;

    @TempDir
    Path dir;
    private ImageFile file;
    private FakeStorage storage;

    /** Bump allocator + refcount map + a header that commitDirectory rewrites; records the call order. */
    final class FakeStorage implements BitmapStorage {
        long next = 4L * CLUSTER;
        final Map<Long, Integer> refcounts = new TreeMap<>();
        final List<String> calls = new ArrayList<>();
        Qcow2Header header = new Qcow2Header(3, 0, 0, CLUSTER_BITS, SIZE, 0, 1, 0x30000, 0x10000, 1, 0, 0, 0, 0, 0,
                4, 112, 0, new byte[0], List.of(), null);

        @Override
        public String resource() {
            return "fake.qcow2";
        }

        @Override
        public int clusterBits() {
            return CLUSTER_BITS;
        }

        @Override
        public long imageSize() {
            return SIZE;
        }

        @Override
        public long allocate(int clusters) {
            long at = next;
            for (int i = 0; i < clusters; i++) {
                refcounts.put(at + (long) i * CLUSTER, 1);
            }
            next += (long) clusters * CLUSTER;
            calls.add("allocate");
            return at;
        }

        @Override
        public void write(long hostOffset, ByteBuffer data) throws IOException {
            assertEquals(1, refcounts.getOrDefault(hostOffset, 0), "write to an allocated cluster");
            file.write(hostOffset, data);
            calls.add("write");
        }

        @Override
        public void flush() {
            calls.add("flush");
        }

        @Override
        public void commitDirectory(int nb, long offset, long size) {
            header = nb == 0 ? header.withExtensions(List.of()).withAutoclearFeatures(0)
                    : header.withExtensions(List.of(new BitmapsExtension(nb, size, offset).toExtension()))
                            .withAutoclearFeatures(1);
            calls.add("commit");
        }

        @Override
        public void free(long hostOffset, int clusters) {
            for (int i = 0; i < clusters; i++) {
                long c = hostOffset + (long) i * CLUSTER;
                assertEquals(1, refcounts.remove(c), "free of a live cluster 0x" + Long.toHexString(c));
            }
            calls.add("free");
        }

        @Override
        public void read(long hostOffset, ByteBuffer dst) throws IOException {
            file.read(hostOffset, dst);
        }
    }

    @BeforeEach
    void open() throws IOException {
        file = ImageFile.open(Files.createFile(dir.resolve("fake.qcow2")), true);
        storage = new FakeStorage();
    }

    @AfterEach
    void close() throws IOException {
        file.close();
    }

    private PersistentBitmaps load() throws IOException {
        return PersistentBitmaps.load(file, storage.header, "fake.qcow2");
    }

    private static DirtyBitmap random(String name, long granularity, boolean enabled, SplittableRandom rnd) {
        DirtyBitmap b = DirtyBitmap.create(name, SIZE, granularity, enabled, true);
        for (int i = 0; i < 200; i++) {
            long off = rnd.nextLong(SIZE);
            b.mark(off, 1 + rnd.nextLong(Math.min(SIZE - off, 1L << 24)));
        }
        return b;
    }

    @Test
    void storedBitmapsShouldLoadBackWithTheirFlags() throws IOException {
        SplittableRandom rnd = new SplittableRandom(SEED);
        DirtyBitmap a = random("a", 65536, true, rnd);
        DirtyBitmap b = random("b", 1 << 20, false, rnd);
        DirtyBitmap c = DirtyBitmap.create("c", SIZE, 512, true, true);   // clean: every table entry 0
        PersistentBitmaps.store(storage, load(), List.of(a, b, c), 0, 0);

        String order = String.join(",", storage.calls);
        assertTrue(order.matches("(allocate,write,)+flush,allocate,write,commit"), "seed=" + SEED + " " + order);
        PersistentBitmaps loaded = load();
        assertNull(loaded.warning());
        assertEquals(List.of("a", "b", "c"), loaded.entries().stream().map(PersistentBitmaps.Entry::name).toList());
        assertEquals(BitmapDirectoryEntry.FLAG_AUTO, loaded.find("a").flags());
        assertEquals(0, loaded.find("b").flags());
        for (DirtyBitmap x : List.of(a, b, c)) {
            DirtyBitmap y = loaded.require(x.name());
            assertEquals(BitmapCodecTest.runs(x), BitmapCodecTest.runs(y), "seed=" + SEED + " " + x.name());
            assertEquals(x.isEnabled(), y.isEnabled());
            assertEquals(x.granularity(), y.granularity());
        }
        assertEquals(0, c.dirtyBytes());
    }

    @Test
    void restoreShouldFreeReplacedClustersAndKeepInUseEntries() throws IOException {
        SplittableRandom rnd = new SplittableRandom(SEED);
        PersistentBitmaps.store(storage, load(), List.of(random("a", 65536, true, rnd), random("b", 65536, true, rnd)),
                0, 0);
        // A crash while "b" recorded: its on-disk entry says in_use. Poke the flag in the directory.
        BitmapsExtension ext = storage.header.bitmapsExtension();
        PersistentBitmaps first = load();
        long bFlags = ext.directoryOffset() + first.find("a").entry().encodedSize() + 12;
        file.write(bFlags, ByteBuffer.allocate(4).putInt(0, 3));
        PersistentBitmaps withInUse = load();
        assertEquals(PersistentBitmaps.Status.INCONSISTENT, withInUse.find("b").status());
        assertNull(withInUse.find("b").bitmap());
        BlockException e = assertThrows(BlockException.class, () -> withInUse.require("b"));
        assertTrue(e.getMessage().startsWith("bitmap 'b': inconsistent (in_use flag set"), e.getMessage());
        assertTrue(e.getMessage().contains("the next backup must be full"), e.getMessage());
        e = assertThrows(BlockException.class, () -> withInUse.require("zz"));
        assertTrue(e.getMessage().startsWith("bitmap 'zz': not found (expected: one of the image's bitmaps: a, b)"),
                e.getMessage());

        DirtyBitmap a2 = withInUse.require("a").copy("a", true, true);
        a2.mark(0, 1);
        PersistentBitmaps.store(storage, withInUse, List.of(a2), ext.directoryOffset(), ext.directorySize());
        PersistentBitmaps second = load();
        assertEquals(List.of("a", "b"), second.entries().stream().map(PersistentBitmaps.Entry::name).toList());
        assertEquals(PersistentBitmaps.Status.INCONSISTENT, second.find("b").status());
        assertEquals(withInUse.find("b").entry(), second.find("b").entry(), "in_use entry carried over unchanged");
        assertEquals(BitmapCodecTest.runs(a2), BitmapCodecTest.runs(second.require("a")));
        // Live clusters are exactly: new directory, a's new table and data, b's old table and data.
        List<Long> live = new ArrayList<>();
        BitmapsExtension ext2 = storage.header.bitmapsExtension();
        live.add(ext2.directoryOffset());
        for (PersistentBitmaps.Entry x : second.entries()) {
            live.add(x.entry().tableOffset());
            ByteBuffer t = ByteBuffer.allocate(x.entry().tableSize() * 8);
            file.read(x.entry().tableOffset(), t);
            for (int i = 0; i < x.entry().tableSize(); i++) {
                long host = BitmapTable.dataOffset(t.getLong(i * 8));
                if (host != 0) {
                    live.add(host);
                }
            }
        }
        live.sort(null);
        assertEquals(live, new ArrayList<>(storage.refcounts.keySet()), "seed=" + SEED);
    }

    @Test
    void clearedAutoclearBitShouldMakeEveryBitmapInconsistent() throws IOException {
        PersistentBitmaps.store(storage, load(), List.of(DirtyBitmap.create("a", SIZE, 65536, true, true)), 0, 0);
        storage.header = storage.header.withAutoclearFeatures(0);
        PersistentBitmaps p = load();
        assertNotNull(p.warning());
        assertEquals(PersistentBitmaps.Status.INCONSISTENT, p.find("a").status());
        assertThrows(BlockException.class, () -> p.require("a"));
    }

    @Test
    void storeShouldRefuseBitmapsQemuCouldNotLoad() throws IOException {
        PersistentBitmaps none = load();
        BlockException e = assertThrows(BlockException.class, () -> PersistentBitmaps.store(storage, none,
                List.of(DirtyBitmap.create("t", SIZE, 65536, true, false)), 0, 0));
        assertTrue(e.getMessage().contains("transient"), e.getMessage());
        e = assertThrows(BlockException.class, () -> PersistentBitmaps.store(storage, none,
                List.of(DirtyBitmap.create("s", SIZE - 512, 65536, true, true)), 0, 0));
        assertTrue(e.getMessage().contains("bitmap 's': size"), e.getMessage());
        e = assertThrows(BlockException.class, () -> PersistentBitmaps.store(storage, none,
                List.of(DirtyBitmap.create("d", SIZE, 65536, true, true), DirtyBitmap.create("d", SIZE, 512, true,
                        true)), 0, 0));
        assertTrue(e.getMessage().contains("name already used"), e.getMessage());
        assertTrue(storage.calls.isEmpty(), "nothing allocated before the checks: " + storage.calls);
    }
}
