package dev.shear.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.zip.Inflater;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Sanity checks of the fixture itself (qemu-img check/compare of its output is done in src-test and by hand). */
class Qcow2TestImageTest {
    @TempDir
    Path dir;

    @Test
    void freshImageShouldHaveMagicAndRefcountedHeader() throws IOException {
        Path p = dir.resolve("a.qcow2");
        Qcow2TestImage.Layout layout = Qcow2TestImage.create(1 << 20).writeTo(p);
        try (FileChannel ch = FileChannel.open(p)) {
            ByteBuffer h = ByteBuffer.allocate(112);
            ch.read(h, 0);
            assertEquals(Qcow2TestImage.QCOW2_MAGIC, h.getInt(0));
            assertEquals(3, h.getInt(4));
            assertEquals(layout.refcountTableOffset(), h.getLong(48));
            ByteBuffer t = ByteBuffer.allocate(8);
            ch.read(t, layout.refcountTableOffset());
            long block = t.getLong(0);
            ByteBuffer r = ByteBuffer.allocate(2);
            ch.read(r, block);
            assertEquals(1, r.getShort(0));   // cluster 0 refcount
        }
    }

    @Test
    void deflate4kShouldRoundTrip() throws Exception {
        byte[] data = new byte[65536];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (i % 251 < 30 ? i : 0);
        }
        byte[] z = Qcow2TestImage.deflate4k(data);
        Inflater inf = new Inflater(true);
        inf.setInput(z);
        byte[] out = new byte[data.length];
        assertEquals(data.length, inf.inflate(out));
        inf.end();
        assertArrayEquals(data, out);
    }

    @Test
    void subByteRefcountsShouldPackFromTheLowBit() {
        byte[] block = new byte[2];
        Qcow2TestImage.setRefcount(block, 0, 1, 1);
        Qcow2TestImage.setRefcount(block, 7, 2, 2);
        assertEquals(1, block[0]);
        assertEquals((byte) 0x80, block[1]);
    }
}
