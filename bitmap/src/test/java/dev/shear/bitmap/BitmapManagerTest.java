package dev.shear.bitmap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.block.BlockDevice;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFormat;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2CreateOptions;
import dev.shear.qcow2.Qcow2Creator;
import dev.shear.qcow2.Qcow2Image;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link BitmapManager} over real qcow2 files and the write engine: the in_use discipline
 * (dirty-bitmaps.md §4.1, §4.3), tracking of all three mutating calls, and the limits of
 * {@code qemu-img bitmap --add} refused before anything changes.
 */
class BitmapManagerTest {
    private static final long SIZE = 64L << 20;

    @TempDir
    Path dir;
    private Path image;

    @BeforeEach
    void create() throws IOException {
        image = dir.resolve("disk.qcow2");
        Qcow2Creator.create(image, Qcow2CreateOptions.defaults(SIZE));
    }

    static Qcow2Image rw(Path p) throws IOException {
        return (Qcow2Image) Images.open(p, ImageFormat.QCOW2, false, null);
    }

    static PersistentBitmaps onDisk(Path p) throws IOException {
        try (Qcow2Image ro = (Qcow2Image) Images.open(p, ImageFormat.QCOW2, true, null)) {
            return PersistentBitmaps.load(ro);
        }
    }

    private void addOffline(String name, long granularity, boolean enabled) throws IOException {
        try (Qcow2Image img = rw(image)) {
            BitmapManager m = BitmapManager.open(img, BitmapManager.Mode.EDIT);
            m.add(name, granularity, enabled);
            m.close();
        }
    }

    @Test
    void trackingShouldSetInUseBeforeWritesAndClearItAtCloseWithEveryChangeRecorded() throws IOException {
        addOffline("a", 65536, true);
        addOffline("off", 65536, false);
        assertEquals(PersistentBitmaps.Status.USABLE, onDisk(image).find("a").status());

        BitmapManager m = BitmapManager.open(rw(image), BitmapManager.Mode.TRACKING);
        PersistentBitmaps during = onDisk(image);
        assertTrue(during.find("a").inUse(), "in_use on disk before the first write");
        assertTrue(during.find("off").inUse(), "QEMU sets in_use on every loaded bitmap");
        BlockDevice dev = m.device();
        dev.write(0, ByteBuffer.allocate(4096), 0);
        dev.writeZeroes(1 << 20, 512, 0);
        dev.discard(3L << 20, 70000, 0);
        assertTrue(onDisk(image).find("a").inUse(), "still in_use while open");
        dev.close();

        PersistentBitmaps after = onDisk(image);
        DirtyBitmap a = after.require("a");
        assertFalse(after.find("a").inUse());
        assertTrue(a.isEnabled());
        assertEquals(65536 + 65536 + 2 * 65536, a.dirtyBytes());
        assertTrue(a.isDirty(3L << 20, 1) && a.isDirty((3L << 20) + 69999, 1));
        DirtyBitmap off = after.require("off");
        assertFalse(off.isEnabled());
        assertTrue(off.isClean(), "a disabled bitmap records nothing");
    }

    @Test
    void anUncleanCloseShouldLeaveBitmapsInUseAndRefusedButRemovable() throws IOException {
        addOffline("a", 65536, true);
        Qcow2Image img = rw(image);
        BitmapManager m = BitmapManager.open(img, BitmapManager.Mode.TRACKING);
        m.device().write(0, ByteBuffer.allocate(512), 0);
        img.flush();
        img.file().close();    // the process dies: nothing stored

        PersistentBitmaps crashed = onDisk(image);
        assertEquals(PersistentBitmaps.Status.INCONSISTENT, crashed.find("a").status());
        BlockException e = assertThrows(BlockException.class, () -> crashed.require("a"));
        assertTrue(e.getMessage().contains("the next backup must be full"), e.getMessage());

        try (Qcow2Image again = rw(image)) {
            BitmapManager m2 = BitmapManager.open(again, BitmapManager.Mode.EDIT);
            BlockException c = assertThrows(BlockException.class, () -> m2.clear("a"));
            assertTrue(c.getMessage().contains("only removing it is allowed"), c.getMessage());
            assertThrows(BlockException.class, () -> m2.setEnabled("a", true));
            m2.remove("a");
            m2.close();
        }
        assertNull(onDisk(image).find("a"));
        assertTrue(onDisk(image).entries().isEmpty());
    }

    @Test
    void inconsistentBitmapsShouldBeCarriedOverByATrackingSession() throws IOException {
        addOffline("a", 65536, true);
        Qcow2Image img = rw(image);
        BitmapManager.open(img, BitmapManager.Mode.TRACKING);
        img.file().close();
        addOffline("b", 4096, true);
        try (BlockDevice dev = BitmapManager.open(rw(image), BitmapManager.Mode.TRACKING).device()) {
            dev.write(8192, ByteBuffer.allocate(512), 0);
        }
        PersistentBitmaps p = onDisk(image);
        assertEquals(List.of("a", "b"), p.entries().stream().map(PersistentBitmaps.Entry::name).toList());
        assertEquals(PersistentBitmaps.Status.INCONSISTENT, p.find("a").status());
        assertEquals(4096, p.require("b").dirtyBytes());
    }

    @Test
    void badAddsShouldBeRefusedNamingTheProblemAndChangeNothing() throws IOException {
        addOffline("a", 65536, true);
        try (Qcow2Image img = rw(image)) {
            BitmapManager m = BitmapManager.open(img, BitmapManager.Mode.EDIT);
            assertMessage(() -> m.add("a", 0, true), "already exists");
            assertMessage(() -> m.add("x".repeat(1024), 0, true), "1024 bytes (expected: 1..1023)");
            assertMessage(() -> m.add("", 0, true), "0 bytes");
            assertMessage(() -> m.add("g", 256, true), "granularity 256");
            assertMessage(() -> m.add("g", 3 << 12, true), "power of two");
            assertMessage(() -> m.add("g", 1L << 32, true), "granularity");
            assertMessage(() -> m.merge("a", DirtyBitmap.create("s", SIZE + 512, 65536, true, false)),
                    "the image size");
            assertMessage(() -> m.clear("nope"), "not found");
            m.add("x".repeat(1023), 512, false);
            m.discard();
        }
        assertEquals(1, onDisk(image).entries().size());
    }

    @Test
    void moreThan65535BitmapsShouldBeRefused() throws IOException {
        try (Qcow2Image img = rw(image)) {
            BitmapManager m = BitmapManager.open(img, BitmapManager.Mode.EDIT);
            for (int i = 0; i < BitmapManager.MAX_BITMAPS; i++) {
                m.add(Integer.toString(i), 1L << 31, false);
            }
            assertMessage(() -> m.add("one-more", 1L << 31, false), "at most 65535");
            m.discard();
        }
    }

    @Test
    void editsShouldApplyInOrderAndMergeAcrossGranularities() throws IOException {
        try (Qcow2Image img = rw(image)) {
            BitmapManager m = BitmapManager.open(img, BitmapManager.Mode.EDIT);
            DirtyBitmap fine = m.add("fine", 4096, true);
            fine.mark(70000, 1);
            m.add("coarse", 0, false);
            assertEquals(65536, m.defaultGranularity());
            m.merge("coarse", m.require("fine"));
            m.setEnabled("coarse", true);
            m.setEnabled("fine", false);
            m.close();
        }
        PersistentBitmaps p = onDisk(image);
        assertEquals(65536, p.require("coarse").dirtyBytes());
        assertTrue(p.require("coarse").isDirty(65536, 1));
        assertTrue(p.require("coarse").isEnabled());
        assertFalse(p.require("fine").isEnabled());
        try (Qcow2Image img = rw(image)) {
            BitmapManager m = BitmapManager.open(img, BitmapManager.Mode.EDIT);
            m.clear("coarse");
            m.remove("fine");
            m.close();
        }
        p = onDisk(image);
        assertNull(p.find("fine"));
        assertTrue(p.require("coarse").isClean());
    }

    @Test
    void flushedBitmapsShouldSurviveACrashUntilTheNextWriteSetsInUseAgain() throws IOException {
        Qcow2Image img = rw(image);
        BitmapManager m = BitmapManager.open(img, BitmapManager.Mode.TRACKING);
        m.add("c1", 65536, true);
        m.device().write(0, ByteBuffer.allocate(512), 0);
        m.flushBitmaps();
        PersistentBitmaps flushed = onDisk(image);
        assertFalse(flushed.find("c1").inUse(), "stored clean while the image stays open");
        assertEquals(65536, flushed.require("c1").dirtyBytes());
        assertTrue(onDisk(image).require("c1").isDirty(0, 1));

        m.device().writeZeroes(1 << 20, 512, 0);
        assertTrue(onDisk(image).find("c1").inUse(), "the first change after a flush sets in_use first");
        m.device().discard(2L << 20, 65536, 0);
        m.flushBitmaps();
        assertFalse(onDisk(image).find("c1").inUse());
        assertEquals(3 * 65536, onDisk(image).require("c1").dirtyBytes());

        m.add("late", 65536, true);     // added after the flush: not on disk until the next store
        m.device().write(3L << 20, ByteBuffer.allocate(512), 0);
        assertTrue(onDisk(image).find("late").inUse(), "stored, in_use, before the write");
        img.flush();
        img.file().close();    // the process dies after a write that followed the flush
        assertEquals(PersistentBitmaps.Status.INCONSISTENT, onDisk(image).find("c1").status(),
                "a crash after a change is never a clean bitmap missing that change");
    }

    @Test
    void aCrashRightAfterAFlushShouldLeaveExactUsableBitmaps() throws IOException {
        addOffline("a", 65536, true);
        Qcow2Image img = rw(image);
        BitmapManager m = BitmapManager.open(img, BitmapManager.Mode.TRACKING);
        m.device().write(5L << 20, ByteBuffer.allocate(4096), 0);
        m.flushBitmaps();
        img.file().close();    // the process dies: no close, no further store

        PersistentBitmaps crashed = onDisk(image);
        assertEquals(PersistentBitmaps.Status.USABLE, crashed.find("a").status());
        assertEquals(65536, crashed.require("a").dirtyBytes());
        assertTrue(crashed.require("a").isDirty(5L << 20, 4096));
    }

    /** Autoclear bit 0 found clear (a program without bitmap support wrote the image): dropped, as QEMU. */
    @Test
    void aStaleBitmapsExtensionShouldBeReportedThenDroppedByAReadWriteSession() throws IOException {
        addOffline("a", 65536, true);
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(image,
                java.nio.file.StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(8), 88);    // autoclear_features = 0
        }
        assertNotNull(onDisk(image).warning());
        assertEquals(PersistentBitmaps.Status.INCONSISTENT, onDisk(image).find("a").status());
        BitmapManager m = BitmapManager.open(rw(image), BitmapManager.Mode.TRACKING);
        assertNotNull(m.warning());
        assertTrue(m.list().isEmpty());
        PersistentBitmaps during = onDisk(image);
        assertNull(during.warning());
        assertTrue(during.entries().isEmpty(), "the stale extension is gone before any write");
        m.add("b", 0, true);
        m.device().write(0, ByteBuffer.allocate(512), 0);
        m.device().close();
        assertEquals(List.of("b"), onDisk(image).entries().stream().map(PersistentBitmaps.Entry::name).toList());
    }

    private static void assertMessage(org.junit.jupiter.api.function.Executable e, String part) {
        BlockException x = assertThrows(BlockException.class, e);
        assertTrue(x.getMessage().contains(part), x.getMessage());
    }

    static long fileSize(Path p) throws IOException {
        return Files.size(p);
    }
}
