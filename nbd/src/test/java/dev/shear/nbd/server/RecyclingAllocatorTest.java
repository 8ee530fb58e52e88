package dev.shear.nbd.server;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.UnpooledByteBufAllocator;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class RecyclingAllocatorTest {
    private static final int KIB = 1024;

    private final RecyclingAllocator alloc = new RecyclingAllocator(UnpooledByteBufAllocator.DEFAULT, 1 << 20);

    @Test
    void sizeClassesShouldBeTheSmallestPowerOfTwoThatHolds() {
        assertEquals(0, RecyclingAllocator.sizeClass(64 * KIB));
        assertEquals(1, RecyclingAllocator.sizeClass(64 * KIB + 1));
        assertEquals(2, RecyclingAllocator.sizeClass(256 * KIB));
        assertEquals(6, RecyclingAllocator.sizeClass(4 << 20));
        assertEquals(256 * KIB, RecyclingAllocator.blockBytes(2));
    }

    @Test
    void aReleasedBufferShouldLendItsBlockToTheNextOfItsSize() {
        ByteBuf a = alloc.ioBuffer(256 * KIB);
        assertTrue(a.isDirect());
        assertEquals(256 * KIB, a.capacity());
        assertEquals(0, a.writerIndex());
        a.writeLong(0x1122334455667788L);
        assertEquals(0x1122334455667788L, a.nioBuffer(0, 8).getLong(0));
        a.release();
        assertEquals(256 * KIB, alloc.retainedBytes());

        ByteBuf b = alloc.directBuffer(200 * KIB);   // same class: the same block, capacity as asked
        assertEquals(0, alloc.retainedBytes());
        assertEquals(200 * KIB, b.capacity());
        assertEquals(0, b.readableBytes());
        assertEquals(0x1122334455667788L, b.getLong(0), "the block is reused, not a new one");
        b.release();
        assertEquals(256 * KIB, alloc.retainedBytes());
    }

    @Test
    void buffersOutsideTheRecycledSizesShouldComeFromTheDelegate() {
        ByteBuf small = alloc.directBuffer(64 * KIB - 1);
        ByteBuf huge = alloc.directBuffer((4 << 20) + 1);
        ByteBuf heap = alloc.heapBuffer(256 * KIB);
        assertEquals(UnpooledByteBufAllocator.DEFAULT, small.alloc());
        assertEquals(UnpooledByteBufAllocator.DEFAULT, huge.alloc());
        assertFalse(heap.isDirect());
        small.release();
        huge.release();
        heap.release();
        assertEquals(0, alloc.retainedBytes());
    }

    @Test
    void blocksBeyondTheRetainLimitShouldBeFreedNotKept() {
        List<ByteBuf> held = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            held.add(alloc.directBuffer(256 * KIB));   // 1.5 MiB out, limit 1 MiB
        }
        held.forEach(ByteBuf::release);
        assertEquals(1 << 20, alloc.retainedBytes());
    }

    @Test
    void aBufferThatGrowsShouldStillGiveItsBlockBack() {
        ByteBuf a = alloc.directBuffer(64 * KIB);
        byte[] data = new byte[100 * KIB];
        data[data.length - 1] = 7;
        a.writeBytes(data);   // past the block: the buffer moves to memory of its own
        assertTrue(a.capacity() >= data.length);
        assertEquals(7, a.getByte(data.length - 1));
        a.release();
        assertEquals(64 * KIB, alloc.retainedBytes());
        ByteBuf b = alloc.directBuffer(64 * KIB);
        assertEquals(0, alloc.retainedBytes());
        b.release();
    }

    @Test
    void buffersReleasedOnOtherThreadsShouldAllComeBack() throws Exception {
        RecyclingAllocator shared = new RecyclingAllocator(UnpooledByteBufAllocator.DEFAULT, 64L << 20);
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            CountDownLatch start = new CountDownLatch(1);
            List<Future<?>> done = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                int seed = t;
                done.add(pool.submit(() -> {
                    start.await();
                    for (int i = 0; i < 2000; i++) {
                        ByteBuf b = shared.directBuffer((64 + (seed * 97 + i * 31) % 900) * KIB);
                        b.writeInt(i);
                        assertEquals(i, b.readInt());
                        b.release();
                    }
                    return null;
                }));
            }
            start.countDown();
            for (Future<?> f : done) {
                f.get(60, TimeUnit.SECONDS);
            }
        } finally {
            pool.shutdownNow();
        }
        long retained = shared.retainedBytes();
        assertNotEquals(0, retained);
        // Never more than 4 blocks of one class out at once (one per thread), classes 64 KiB to 1 MiB.
        assertTrue(retained <= 4L * (64 + 128 + 256 + 512 + 1024) * KIB, "retained: " + retained);
    }
}
