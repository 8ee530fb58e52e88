package dev.shear.bitmap.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shear.bitmap.BitmapManager;
import dev.shear.bitmap.DirtyBitmap;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFormat;
import dev.shear.qcow2.Images;
import dev.shear.qcow2.Qcow2CreateOptions;
import dev.shear.qcow2.Qcow2Creator;
import dev.shear.qcow2.Qcow2Image;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Checkpoint chains over a real image: create/list/delete/redefine, changes since, the sidecar. */
class CheckpointsTest {
    private static final long SIZE = 16L << 20;

    @TempDir
    Path dir;
    private Path image;

    @BeforeEach
    void create() throws IOException {
        image = dir.resolve("disk.qcow2");
        Qcow2Creator.create(image, Qcow2CreateOptions.defaults(SIZE));
    }

    private BitmapManager tracking() throws IOException {
        return BitmapManager.open((Qcow2Image) Images.open(image, ImageFormat.QCOW2, false, null),
                BitmapManager.Mode.TRACKING);
    }

    @Test
    void chainShouldAnswerChangesSinceEachCheckpointAndSurviveReopen() throws IOException {
        BitmapManager m = tracking();
        Checkpoints cp = Checkpoints.open(image, m);
        cp.create("c1", "first", 0, null);
        m.device().write(0, ByteBuffer.allocate(512), 0);
        cp.create("c2", "", 0, null);
        m.device().write(1 << 20, ByteBuffer.allocate(512), 0);
        assertEquals(2 * 65536, cp.changesSince("c1", "backup-vda").dirtyBytes());
        DirtyBitmap since2 = cp.changesSince("c2", "backup-vda");
        assertEquals(65536, since2.dirtyBytes());
        assertFalse(since2.isEnabled());
        m.device().write(2 << 20, ByteBuffer.allocate(512), 0);
        assertEquals(65536, since2.dirtyBytes(), "frozen at the instant it was taken");
        m.device().close();

        BitmapManager m2 = tracking();
        Checkpoints again = Checkpoints.open(image, m2);
        List<Checkpoints.Status> l = again.list();
        assertEquals(List.of("c1", "c2"), l.stream().map(s -> s.checkpoint().name()).toList());
        assertEquals("c1", l.get(1).checkpoint().parent());
        assertEquals("first", l.get(0).checkpoint().description());
        assertTrue(l.get(0).usable() && l.get(1).usable());
        assertEquals(3 * 65536, again.changesSince("c1", "b").dirtyBytes());

        again.delete("c1");
        assertNull(again.chain().find("c1"));
        assertNull(again.chain().find("c2").parent(), "re-parented");
        assertNull(m2.find("c1"));
        m2.device().close();
    }

    @Test
    void olderStyleChainsShouldAnswerTheUnionOfLaterBitmaps() throws IOException {
        BitmapManager m = tracking();
        Checkpoints cp = Checkpoints.open(image, m);
        cp.create("c1", "", 0, null);
        m.device().write(0, ByteBuffer.allocate(512), 0);
        m.setEnabled("c1", false);                 // libvirt's older model: only the newest records
        cp.create("c2", "", 0, null);
        m.device().write(1 << 20, ByteBuffer.allocate(512), 0);
        assertEquals(2 * 65536, cp.changesSince("c1", "x").dirtyBytes());
        cp.delete("c2");                            // merged into c1, which records again
        assertTrue(m.require("c1").isEnabled());
        assertEquals(2 * 65536, cp.changesSince("c1", "x").dirtyBytes());
        m.device().close();
    }

    @Test
    void anUncleanCloseShouldMakeCheckpointsUnusableNamingCheckpointAndBitmap() throws IOException {
        BitmapManager m = tracking();
        Checkpoints.open(image, m).create("c1", "", 0, null);
        m.device().write(0, ByteBuffer.allocate(512), 0);
        m.image().file().close();                  // crash: bitmaps stay in_use
        BitmapManager m2 = tracking();
        Checkpoints cp = Checkpoints.open(image, m2);
        Checkpoints.Status s = cp.list().get(0);
        assertFalse(s.usable());
        assertTrue(s.problem().contains("checkpoint 'c1': bitmap 'c1' is inconsistent"), s.problem());
        BlockException e = assertThrows(BlockException.class, () -> cp.changesSince("c1", "x"));
        assertTrue(e.getMessage().contains("the next backup must be full"), e.getMessage());
        BlockException r = assertThrows(BlockException.class, () -> cp.redefine(List.of(
                new Checkpoint("c1", null, Instant.EPOCH, "", "c1"))));
        assertTrue(r.getMessage().contains("checkpoint 'c1'"), r.getMessage());
        m2.device().close();
    }

    @Test
    void redefineShouldBeAllOrNothingNamingTheFirstMissingBitmap() throws IOException {
        BitmapManager m = tracking();
        m.add("a", 0, true);
        m.add("b", 0, true);
        Checkpoints cp = Checkpoints.open(image, m);
        BlockException e = assertThrows(BlockException.class, () -> cp.redefine(List.of(
                new Checkpoint("a", null, Instant.EPOCH, "", "a"), new Checkpoint("z", "a", Instant.EPOCH, "", "z"),
                new Checkpoint("b", "z", Instant.EPOCH, "", "b"))));
        assertTrue(e.getMessage().contains("checkpoint 'z': bitmap 'z' is missing"), e.getMessage());
        assertFalse(Files.exists(CheckpointStore.sidecar(image)));
        cp.redefine(List.of(new Checkpoint("a", null, Instant.EPOCH, "d\tx%\n", "a"),
                new Checkpoint("b", "a", Instant.EPOCH, "", "b")));
        assertEquals(cp.chain(), CheckpointStore.read(image));
        m.device().close();
    }

    @Test
    void damagedSidecarsShouldBeRefusedNamingTheLine() throws IOException {
        Path side = CheckpointStore.sidecar(image);
        String good = "shear-checkpoints 1\nc1\t\t2026-01-01T00:00:00Z\tc1\t\n";
        Files.writeString(side, good);
        assertEquals("c1", CheckpointStore.read(image).list().get(0).name());
        for (String[] bad : new String[][] {
            {"shear-checkpoints 2\n", "line 1"},
            {good.substring(0, good.length() - 1), "no newline"},
            {"shear-checkpoints 1\nc1\t\t2026-01-01T00:00:00Z\tc1\n", "line 2: 4 fields"},
            {"shear-checkpoints 1\nc1\t\tyesterday\tc1\t\n", "line 2: created"},
            {"shear-checkpoints 1\nc%1\t\t2026-01-01T00:00:00Z\tc1\t\n", "bad escape"},
            {"shear-checkpoints 1\nc2\tc1\t2026-01-01T00:00:00Z\tc2\t\n", "parent 'c1'"},
            {good + "c1\t\t2026-01-01T00:00:00Z\tc9\t\n", "listed twice"}}) {
            Files.write(side, bad[0].getBytes(StandardCharsets.UTF_8));
            BlockException e = assertThrows(BlockException.class, () -> CheckpointStore.read(image), bad[0]);
            assertTrue(e.getMessage().contains(bad[1]) && e.getMessage().contains(side.toString()), e.getMessage());
        }
    }

    @Test
    void sidecarReplaceShouldBeAtomicAndRoundTripOddNames() throws IOException {
        CheckpointChain chain = new CheckpointChain(List.of(
                new Checkpoint("ä b\tc%", null, Instant.parse("2026-11-23T15:52:22Z"), "line1\nline2", "ä b\tc%"),
                new Checkpoint("𝄞", "ä b\tc%", Instant.parse("2026-11-23T15:52:23Z"), "", "𝄞")));
        Files.writeString(CheckpointStore.sidecar(image).resolveSibling("disk.qcow2.checkpoints.tmp"), "junk");
        CheckpointStore.write(image, chain);
        assertEquals(chain, CheckpointStore.read(image));
        assertFalse(Files.exists(CheckpointStore.sidecar(image).resolveSibling("disk.qcow2.checkpoints.tmp")));
        CheckpointStore.write(image, CheckpointChain.EMPTY);
        assertFalse(Files.exists(CheckpointStore.sidecar(image)));
    }
}
