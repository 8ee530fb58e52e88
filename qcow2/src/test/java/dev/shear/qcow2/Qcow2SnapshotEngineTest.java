package dev.shear.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Internal snapshots: create / apply / delete keep refcounts and copied flags exact (§8, §10). */
class Qcow2SnapshotEngineTest {
    private static final long SEED = Long.getLong("test.seed", 8L);

    @TempDir
    Path dir;

    private Qcow2Image openRw(Path p) throws IOException {
        return Qcow2Image.open(ImageFile.open(p, true), Qcow2OpenOptions.defaults().withReadOnly(false));
    }

    private static byte[] read(Path p, String snapshot, long size) throws IOException {
        try (Qcow2Image img = Qcow2Image.open(ImageFile.open(p, false),
                Qcow2OpenOptions.defaults().withSnapshot(snapshot))) {
            ByteBuffer b = ByteBuffer.allocate((int) size);
            img.read(0, b);
            return b.array();
        }
    }

    private static void assertClean(Path p, String when) throws IOException {
        try (ImageFile f = ImageFile.open(p, false)) {
            CheckResult r = Qcow2Check.check(f, p.toString());
            assertTrue(r.isClean(), when + ": " + r);
        }
    }

    private static void scribble(Qcow2Image img, byte[] model, SplittableRandom r, int cs) throws IOException {
        for (int i = 0; i < 30; i++) {
            int off = r.nextInt(model.length - 5000);
            byte[] d = new byte[1 + r.nextInt(5000)];
            r.nextBytes(d);
            img.write(off, ByteBuffer.wrap(d), 0);
            System.arraycopy(d, 0, model, off, d.length);
        }
        int c = r.nextInt(model.length / cs);
        byte[] text = new byte[cs];
        java.util.Arrays.fill(text, (byte) 'q');
        img.writeCompressed((long) c * cs, ByteBuffer.wrap(text));
        System.arraycopy(text, 0, model, c * cs, cs);
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096, 65536})
    void createApplyDeleteShouldKeepTheImageConsistent(int cs) throws IOException {
        SplittableRandom r = new SplittableRandom(SEED);
        long size = 1L << 20;
        Path p = dir.resolve("s.qcow2");
        Qcow2Creator.create(p, Qcow2CreateOptions.parse(size, Map.of("cluster_size", String.valueOf(cs)), null,
                null));
        byte[] m0 = new byte[(int) size];
        try (Qcow2Image img = openRw(p)) {
            scribble(img, m0, r, cs);
        }
        try (Qcow2Image img = openRw(p)) {
            Qcow2Snapshot s = new Qcow2SnapshotEngine(img).create("one");
            assertEquals("1", s.id());
        }
        assertClean(p, "after create");
        byte[] m1 = m0.clone();
        try (Qcow2Image img = openRw(p)) {
            scribble(img, m1, r, cs);
        }
        assertClean(p, "after writes over the snapshot");
        assertArrayEquals(m0, read(p, "one", size));
        assertArrayEquals(m1, read(p, null, size));
        try (Qcow2Image img = openRw(p)) {
            assertEquals("2", new Qcow2SnapshotEngine(img).create("two").id());
        }
        try (Qcow2Image img = openRw(p)) {
            new Qcow2SnapshotEngine(img).apply("one");
        }
        assertClean(p, "after apply");
        assertArrayEquals(m0, read(p, null, size));
        byte[] m2 = m0.clone();
        try (Qcow2Image img = openRw(p)) {
            scribble(img, m2, r, cs);
        }
        assertClean(p, "after writes over the applied snapshot");
        assertArrayEquals(m0, read(p, "one", size));
        assertArrayEquals(m1, read(p, "two", size));
        try (Qcow2Image img = openRw(p)) {
            new Qcow2SnapshotEngine(img).delete("one");
        }
        assertClean(p, "after delete one");
        assertArrayEquals(m2, read(p, null, size));
        assertArrayEquals(m1, read(p, "two", size));
        try (Qcow2Image img = openRw(p)) {
            new Qcow2SnapshotEngine(img).delete("two");
            assertEquals(0, img.allocator().header().nbSnapshots());
        }
        assertClean(p, "after delete two");
        assertArrayEquals(m2, read(p, null, size));
        try (Qcow2Image img = openRw(p)) {
            scribble(img, m2, r, cs);   // copied flags are back: writes go in place again
        }
        assertClean(p, "after writes with no snapshot");
        assertArrayEquals(m2, read(p, null, size));
    }
}
