package dev.shear.systest.tools;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.images.Damage;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Corruptor reads qcow2 metadata the way QEMU does, and each {@link Damage} gets the verdict from
 * qemu-img check that it promises (so the check differential test compares against the right thing).
 */
@RequiresTools({"qemu-img", "qemu-io"})
class CorruptorTest {
    private final QemuImg qemuImg = new QemuImg();

    @Test
    void pokeAndPeekShouldRoundTrip(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("f");
        java.nio.file.Files.write(f, new byte[100]);
        Corruptor.pokeLong(f, 10, 0x0102030405060708L);
        assertEquals(0x0102030405060708L, Corruptor.peekLong(f, 10));
        assertArrayEquals(new byte[] {0, 1, 2}, Corruptor.peek(f, 9, 3));
        Corruptor.poke(f, 200, new byte[] {9});
        assertEquals(201, java.nio.file.Files.size(f));
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 4, 8, 16, 32, 64})
    void headerAndRefcountsShouldMatchQemuImg(int refcountBits, @TempDir Path dir) {
        Path img = dir.resolve("a.qcow2");
        qemuImg.create(img, "qcow2", 3 * 1024 * 1024, "cluster_size=4096", "refcount_bits=" + refcountBits);
        new QemuIo().run(img, "qcow2", List.of(QemuIo.write(7, 0, 4096)));
        Qcow2HeaderFields h = Corruptor.header(img);
        JsonNode info = qemuImg.infoJson(img, "qcow2");
        assertEquals(info.get("virtual-size").asLong(), h.size());
        assertEquals(info.get("cluster-size").asLong(), h.clusterSize());
        assertEquals(refcountBits, h.refcountBits());
        // Header, refcount table and block, L1, L2 and data: all in use once.
        for (long cluster = 0; cluster < 4; cluster++) {
            assertEquals(1, Corruptor.refcount(img, cluster), "refcount of cluster " + cluster);
        }
        long data = Corruptor.hostClusterOffset(img, 0);
        assertTrue(data > 0 && data % 4096 == 0, "host offset 0x" + Long.toHexString(data));
        assertEquals(1, Corruptor.refcount(img, data / 4096));
        assertEquals(0, Corruptor.refcount(img, 1000));
        assertEquals(0, qemuImg.check(img, "qcow2").exitCode());
    }

    @ParameterizedTest
    @EnumSource(Damage.class)
    void damageShouldGetTheVerdictItPromisesFromQemuImgCheck(Damage damage, @TempDir Path dir) {
        for (long cs : new long[] {4096, 65536}) {
            Path img = Damage.victim(dir, cs);
            assertEquals(0, qemuImg.check(img, "qcow2").exitCode(), "victim must start clean");
            damage.apply(img);
            QemuImg.CheckResult r = qemuImg.check(img, "qcow2");
            assertEquals(damage.qemuCheckExit(), r.exitCode(), damage + " cluster " + cs + ": " + r.raw());
            String key = damage.qemuCheckExit() == QemuImg.CHECK_LEAKS ? "leaks" : "corruptions";
            assertTrue(r.count(key) > 0, damage + ": " + r.json());
        }
    }
}
