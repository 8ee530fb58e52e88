package dev.shear.block;

import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * Zero detection for data about to be stored: a cluster of zeros becomes a zero cluster (or a
 * scratch entry with no space) instead of bytes. The comparisons are {@code mismatch} against a
 * block of zeros, which the JIT vectorises; a byte-at-a-time loop cost a CPU-starved host more
 * than the write it saved.
 */
public final class Zeros {
    private static final int BLOCK = 1 << 16;
    private static final byte[] ARRAY = new byte[BLOCK];
    private static final ByteBuffer BUFFER = ByteBuffer.allocateDirect(BLOCK).asReadOnlyBuffer();

    private Zeros() {
    }

    /** True when every byte of {@code b} from its position to its limit is zero; {@code b} is unchanged. */
    public static boolean isZero(ByteBuffer b) {
        return isZero(b, b.position(), b.limit());
    }

    /** True when every byte of {@code b} in [from, to) (absolute indexes) is zero; {@code b} is unchanged. */
    public static boolean isZero(ByteBuffer b, int from, int to) {
        for (int pos = from; pos < to; pos += BLOCK) {
            int n = Math.min(BLOCK, to - pos);
            if (b.slice(pos, n).mismatch(BUFFER.slice(0, n)) >= 0) {
                return false;
            }
        }
        return true;
    }

    /** True when every byte of {@code a[off, off + len)} is zero. */
    public static boolean isZero(byte[] a, int off, int len) {
        int end = off + len;
        for (int pos = off; pos < end; pos += BLOCK) {
            int n = Math.min(BLOCK, end - pos);
            if (Arrays.mismatch(a, pos, pos + n, ARRAY, 0, n) >= 0) {
                return false;
            }
        }
        return true;
    }
}
