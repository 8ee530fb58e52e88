package dev.shear.fleece;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import dev.shear.block.WriteFlags;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/**
 * The test double must behave like a real device: whatever order overlapping requests land in, block
 * status never says zero/hole where a read returns data. Copy-before-write's "was zero" decision relies
 * on exactly that (a cluster recorded ZERO from a lying status reads as zeros in the snapshot).
 */
class MemoryDeviceTest {
    private static final int BLOCK = MemoryDevice.BLOCK;

    /**
     * One block, two threads released together: a data write and a whole-block write-zeroes or discard.
     * Each request must be atomic: before the fix the zeroing request could fill zeros, the write copy
     * its data and mark the block DATA, then the zeroing request mark it HOLE — data under a hole.
     */
    @Test
    void overlappingWriteAndZeroingShouldLeaveStatusConsistentWithContents() throws Exception {
        MemoryDevice d = new MemoryDevice("m", 4 * BLOCK);
        byte[] payload = new byte[BLOCK];
        Arrays.fill(payload, (byte) 0x15);
        CyclicBarrier start = new CyclicBarrier(2);
        CyclicBarrier done = new CyclicBarrier(2);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        int rounds = 20_000;
        Thread zeroer = new Thread(() -> {
            try {
                for (int i = 0; i < rounds; i++) {
                    start.await(10, TimeUnit.SECONDS);
                    switch (i % 3) {
                        case 0 -> d.discard(BLOCK, BLOCK, 0);
                        case 1 -> d.writeZeroes(BLOCK, BLOCK, 0);
                        default -> d.writeZeroes(BLOCK, BLOCK, WriteFlags.NO_HOLE);
                    }
                    done.await(10, TimeUnit.SECONDS);
                }
            } catch (Throwable e) {
                failure.compareAndSet(null, e);
            }
        }, "zeroer");
        zeroer.setDaemon(true);
        zeroer.start();
        ByteBuffer check = ByteBuffer.allocate(BLOCK);
        for (int i = 0; i < rounds && failure.get() == null; i++) {
            start.await(10, TimeUnit.SECONDS);
            d.write(BLOCK, ByteBuffer.wrap(payload), 0);
            done.await(10, TimeUnit.SECONDS);
            boolean[] zero = {false};
            d.blockStatus(BLOCK, BLOCK, e -> {
                zero[0] = e.isZero();
                return false;
            });
            d.read(BLOCK, check.clear());
            boolean allZero = Arrays.equals(check.array(), new byte[BLOCK]);
            if (zero[0] && !allZero) {
                fail("round " + i + ": block status says zero but the block reads 0x"
                        + Integer.toHexString(check.get(0) & 0xff));
            }
        }
        zeroer.join(TimeUnit.SECONDS.toMillis(10));
        assertEquals(null, failure.get());
    }
}
