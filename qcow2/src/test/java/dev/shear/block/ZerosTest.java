package dev.shear.block;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import org.junit.jupiter.api.Test;

class ZerosTest {
    /** Lengths around the 64 KiB comparison block, and a non-zero byte at every interesting place. */
    @Test
    void aSingleNonZeroByteAnywhereShouldBeFound() {
        for (int len : new int[] {1, 7, 8, 4095, 65535, 65536, 65537, 3 * 65536 + 5}) {
            for (ByteBuffer b : new ByteBuffer[] {ByteBuffer.allocate(len + 2), ByteBuffer.allocateDirect(len + 2)}) {
                b.position(1).limit(len + 1);
                assertTrue(Zeros.isZero(b), "zeros of " + len);
                assertTrue(Zeros.isZero(new byte[len + 2], 1, len));
                for (int at : new int[] {0, len / 2, len - 1, Math.min(len - 1, 65536)}) {
                    b.put(1 + at, (byte) 1);
                    assertFalse(Zeros.isZero(b), "byte " + at + " of " + len + (b.isDirect() ? " direct" : " heap"));
                    assertFalse(Zeros.isZero(b, 1 + at, 2 + at));
                    assertTrue(Zeros.isZero(b, 1, 1 + at), "before the byte");
                    byte[] a = new byte[len + 2];
                    a[1 + at] = 1;
                    assertFalse(Zeros.isZero(a, 1, len));
                    b.put(1 + at, (byte) 0);
                }
                // Bytes outside [position, limit) do not count, and the position is unchanged.
                b.limit(len + 2).put(0, (byte) 9).put(len + 1, (byte) 9).limit(len + 1);
                assertTrue(Zeros.isZero(b));
                assertTrue(b.position() == 1 && b.limit() == len + 1);
            }
        }
    }
}
