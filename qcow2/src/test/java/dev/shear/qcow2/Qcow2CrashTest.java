package dev.shear.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.WriteFlags;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Crash consistency (qcow2-format.md §10: "a crash may leave leaks, never a refcount too low"): a seeded
 * workload runs on a {@link CrashingImageFile}; then for many crash points and every {@link
 * CrashingImageFile.Mode} the file as the disk could hold it is rebuilt and must (1) pass
 * {@link Qcow2Check} without corruption (leaks allowed), (2) still hold every byte acknowledged before
 * the last completed flush and not touched since, and (3) for lazy refcounts, open read-write (which
 * rebuilds the refcounts) and then check with no leak at all. Out of space: an ImageFile double fails
 * mid-allocation and the image must stay consistent, the write failing with NO_SPACE.
 */
class Qcow2CrashTest {
    @TempDir
    Path dir;

    static Stream<Arguments> configs() {
        return Stream.of(
                Arguments.of(65536, false, false, false, 16, 3),
                Arguments.of(512, false, false, false, 1, 3),
                Arguments.of(4096, false, true, false, 16, 3),
                Arguments.of(16384, true, true, false, 16, 3),
                Arguments.of(65536, false, true, true, 16, 3),
                Arguments.of(4096, false, true, false, 16, 2));
    }

    /** A completed flush: the log size when it returned and the model then. */
    private record FlushPoint(int logIndex, byte[] model) {
    }

    /** A guest operation that started at log index {@code start} and touched [offset, offset + length). */
    private record GuestOp(int start, long offset, long length) {
    }

    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    @ParameterizedTest(name = "cs={0} extl2={1} backing={2} lazy={3} refbits={4} v{5}")
    @MethodSource("configs")
    void crashAtAnyPointShouldLeaveLeaksAtMostAndKeepFlushedData(int cs, boolean extl2, boolean backing,
            boolean lazy, int refbits, int version) throws IOException {
        long seed = Long.getLong("shear.seed", System.nanoTime());
        String ctx = "seed=" + seed + " cs=" + cs + " extl2=" + extl2 + " backing=" + backing + " lazy=" + lazy
                + " refbits=" + refbits + " v" + version;
        SplittableRandom rnd = new SplittableRandom(seed);
        long reach = (long) cs * (cs / (extl2 ? 16 : 8));    // bytes one L2 table maps
        long size = Math.min(4L << 20, Math.max(40L * cs, 4 * reach)) - (cs > 512 ? 512 : 0);
        byte[] model = new byte[(int) size];
        Path img = dir.resolve("img.qcow2");
        long backingSize = 0;
        if (backing) {
            Path base = dir.resolve("base.raw");
            backingSize = (size / 2) & ~511L;
            byte[] b = new byte[(int) backingSize];
            rnd.nextBytes(b);
            Files.write(base, b);
            System.arraycopy(b, 0, model, 0, b.length);
            Qcow2Creator.create(img, new Qcow2CreateOptions(size, cs, version, 0, extl2, lazy, refbits, null,
                    base.toString(), "raw"));
        } else {
            Qcow2Creator.create(img, new Qcow2CreateOptions(size, cs, version, 0, extl2, lazy, refbits, null,
                    null, null));
        }
        CrashingImageFile file = new CrashingImageFile(img, Files.readAllBytes(img));
        Qcow2Image image = Qcow2Image.open(file, Qcow2OpenOptions.defaults().withReadOnly(false)
                .withCacheBytes(cs));   // one table: evictions write L2 tables back mid-workload
        List<FlushPoint> flushes = new ArrayList<>();
        List<GuestOp> ops = new ArrayList<>();
        flushes.add(new FlushPoint(0, model.clone()));
        for (int op = 0; op < 250; op++) {
            long off = Math.min(size - 1, rnd.nextInt(3) == 0 ? rnd.nextLong(size) : rnd.nextLong(size / cs) * cs);
            long len = Math.min(size - off, rnd.nextBoolean() ? cs : rnd.nextInt(1, 2 * cs));
            int kind = rnd.nextInt(10);
            int start = file.logSize();
            if (kind < 6) {
                byte[] data = new byte[(int) len];
                rnd.nextBytes(data);
                image.write(off, ByteBuffer.wrap(data), 0);
                System.arraycopy(data, 0, model, (int) off, data.length);
                ops.add(new GuestOp(start, off, len));
            } else if (kind < 7) {
                image.writeZeroes(off, len, rnd.nextBoolean() ? WriteFlags.NO_HOLE : 0);
                Arrays.fill(model, (int) off, (int) (off + len), (byte) 0);
                ops.add(new GuestOp(start, off, len));
            } else if (kind < 8) {
                image.discard(off, len, 0);
                Qcow2WriteRandomTest.discardModel(model, off, len, cs, size, version, backingSize);
                ops.add(new GuestOp(start, off, len));
            } else {
                image.flush();
                flushes.add(new FlushPoint(file.logSize(), model.clone()));
            }
        }
        image.close();
        flushes.add(new FlushPoint(file.logSize(), model.clone()));

        TreeSet<Integer> points = new TreeSet<>();
        int n = file.logSize();
        for (int s : file.syncPoints()) {
            points.add(s);
            points.add(Math.min(n, s + 1));
        }
        for (int i = 0; i < 40; i++) {
            points.add(rnd.nextInt(n + 1));
        }
        points.add(n);
        List<Integer> chosen = new ArrayList<>(points);
        if (chosen.size() > 60) {   // keep the run short: an even spread over the log
            List<Integer> spread = new ArrayList<>();
            for (int i = 0; i < 60; i++) {
                spread.add(chosen.get(i * chosen.size() / 60));
            }
            chosen = spread;
        }
        for (int point : chosen) {
            for (CrashingImageFile.Mode mode : CrashingImageFile.Mode.values()) {
                byte[] disk = file.crashImage(point, mode, rnd);
                String where = ctx + " crash before log entry " + point + "/" + n + " mode " + mode;
                verifyCrashImage(disk, point, flushes, ops, size, lazy, where);
            }
        }
    }

    private void verifyCrashImage(byte[] disk, int point, List<FlushPoint> flushes, List<GuestOp> ops, long size,
            boolean lazy, String where) throws IOException {
        MemoryImageFile mem = new MemoryImageFile(disk);
        List<String> msgs = new ArrayList<>();
        CheckResult r = Qcow2Check.check(mem, "crash", msgs::add);
        if (!r.completed() || r.corruptions() != 0 || r.checkErrors() != 0) {
            if (!(lazy && isDirty(mem))) {
                fail(where + ": " + r.corruptions() + " corruptions: " + msgs.subList(0, Math.min(10, msgs.size())));
            }
        }
        FlushPoint last = flushes.get(0);
        for (FlushPoint f : flushes) {
            if (f.logIndex() <= point) {
                last = f;
            }
        }
        boolean[] uncertain = new boolean[(int) size];
        for (GuestOp op : ops) {
            if (op.start() >= last.logIndex() && op.start() < point) {
                Arrays.fill(uncertain, (int) op.offset(), (int) (op.offset() + op.length()), true);
            }
        }
        // A crash point inside the operation that was running when the flush began can not be told apart
        // from one after it; the log index of each op's start is exact, so nothing else is uncertain.
        MemoryImageFile view = new MemoryImageFile(disk);
        boolean dirty = isDirty(view);
        Qcow2Image img = Qcow2Image.open(new PathedFile(view, dir.resolve("img.qcow2")),
                Qcow2OpenOptions.defaults().withReadOnly(!dirty));
        try {
            byte[] got = new byte[(int) size];
            img.read(0, ByteBuffer.wrap(got));
            for (int i = 0; i < size; i++) {
                if (!uncertain[i] && got[i] != last.model()[i]) {
                    fail(where + ": flushed byte at guest offset " + i + " lost (flush at log " + last.logIndex()
                            + ")");
                }
            }
        } finally {
            img.close();
        }
        if (dirty) {
            CheckResult after = Qcow2Check.check(view, "repaired");
            assertTrue(after.isClean(), where + ": after the repair on read-write open: " + after.corruptions()
                    + " corruptions, " + after.leaks() + " leaks");
        }
    }

    private static boolean isDirty(MemoryImageFile f) throws IOException {
        return Qcow2Header.read(f, "crash").isDirty();
    }

    @Test
    void outOfSpaceMidAllocationShouldFailWithNoSpaceAndLeaveLeaksAtMost() throws IOException {
        long seed = Long.getLong("shear.seed", System.nanoTime());
        SplittableRandom rnd = new SplittableRandom(seed);
        Path img = dir.resolve("nospace.qcow2");
        int cs = 4096;
        long size = 256L * cs;
        for (int budget = 0; budget < 40 * cs; budget += 1536 + rnd.nextInt(2048)) {
            Qcow2Creator.create(img, new Qcow2CreateOptions(size, cs, 3, 0, false, false, 16, null, null, null));
            CrashingImageFile file = new CrashingImageFile(img, Files.readAllBytes(img));
            Qcow2Image image = Qcow2Image.open(file, Qcow2OpenOptions.defaults().withReadOnly(false)
                    .withCacheBytes(2L * cs));
            file.failAfterBytes(budget);
            BlockException failure = null;
            try {
                for (int i = 0; i < 60; i++) {
                    byte[] data = new byte[1 + rnd.nextInt(3 * cs)];
                    rnd.nextBytes(data);
                    image.write(rnd.nextLong(size - data.length), ByteBuffer.wrap(data), 0);
                    if (i % 7 == 0) {
                        image.flush();
                    }
                }
                image.flush();
            } catch (BlockException e) {
                failure = e;
            }
            assertTrue(failure != null, "seed=" + seed + " budget " + budget + ": expected NO_SPACE");
            assertEquals(BlockErrorKind.NO_SPACE, failure.kind(), "seed=" + seed + ": " + failure.getMessage());
            try {
                image.close();
            } catch (IOException expected) {
                // the close's flush runs out of space too
            }
            for (CrashingImageFile.Mode mode : new CrashingImageFile.Mode[] {CrashingImageFile.Mode.KEEP,
                CrashingImageFile.Mode.DROP}) {
                byte[] disk = file.crashImage(file.logSize(), mode, rnd);
                CheckResult r = Qcow2Check.check(new MemoryImageFile(disk), "nospace");
                assertTrue(r.completed() && r.corruptions() == 0, "seed=" + seed + " budget " + budget + " "
                        + mode + ": " + r.corruptions() + " corruptions " + r.messages());
            }
        }
    }

    @Test
    void writePastTheEndShouldBeRefusedBeforeAnythingChanges() throws IOException {
        Path img = dir.resolve("end.qcow2");
        Qcow2Creator.create(img, Qcow2CreateOptions.defaults(1 << 20));
        byte[] before = Files.readAllBytes(img);
        CrashingImageFile file = new CrashingImageFile(img, before);
        try (Qcow2Image image = Qcow2Image.open(file, Qcow2OpenOptions.defaults().withReadOnly(false))) {
            BlockException e = assertThrows(BlockException.class,
                    () -> image.write((1 << 20) - 100, ByteBuffer.allocate(200), 0));
            assertEquals(BlockErrorKind.OUT_OF_RANGE, e.kind());
            assertThrows(BlockException.class, () -> image.writeZeroes(1 << 20, 1, 0));
            assertThrows(BlockException.class, () -> image.discard(-1, 10, 0));
            assertEquals(0, file.logSize(), "nothing may be written for a refused request");
        }
        assertFalse(Qcow2Header.read(new MemoryImageFile(file.contents()), "x").isDirty());
    }

    /** A memory file with a real directory, so that an absolute backing name resolves. */
    private static final class PathedFile implements dev.shear.block.ImageFile {
        private final MemoryImageFile inner;
        private final Path path;

        PathedFile(MemoryImageFile inner, Path path) {
            this.inner = inner;
            this.path = path;
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
        public void read(long position, ByteBuffer dst) {
            inner.read(position, dst);
        }

        @Override
        public void write(long position, ByteBuffer src) {
            inner.write(position, src);
        }

        @Override
        public void sync() {
        }

        @Override
        public long size() {
            return inner.size();
        }

        @Override
        public void truncate(long size) {
            inner.truncate(size);
        }

        @Override
        public java.nio.channels.FileChannel channel() {
            return null;
        }

        @Override
        public void close() {
        }
    }
}
