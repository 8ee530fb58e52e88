package dev.shear.systest.write;

import dev.shear.block.BlockDevice;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.WriteFlags;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Seeded random writes, zero writes, discards and flushes on a device and on a {@code byte[]} model
 * (the same semantics as the qcow2 module's Qcow2WriteRandomTest: discard zeroes whole clusters, except
 * over a backing file in a v2 image; a refused FAST_ZERO changes nothing). Reads are compared as it goes.
 */
final class RandomWriter {
    private final BlockDevice device;
    private final byte[] model;
    private final int clusterSize;
    private final int version;
    private final long backingSize;
    private final SplittableRandom rnd;

    RandomWriter(BlockDevice device, byte[] model, int clusterSize, int version, long backingSize, long seed) {
        this.device = device;
        this.model = model;
        this.clusterSize = clusterSize;
        this.version = version;
        this.backingSize = backingSize;
        this.rnd = new SplittableRandom(seed);
    }

    void run(int ops) throws IOException {
        long size = model.length;
        int cs = clusterSize;
        for (int op = 0; op < ops; op++) {
            long off = switch (rnd.nextInt(3)) {
                case 0 -> rnd.nextLong(size);
                case 1 -> rnd.nextLong((size + cs - 1) / cs) * cs;
                default -> rnd.nextLong(size / 512) * 512;
            };
            off = Math.min(off, size - 1);
            long len = Math.min(size - off, switch (rnd.nextInt(4)) {
                case 0 -> rnd.nextInt(1, 700);
                case 1 -> cs;
                case 2 -> rnd.nextInt(1, 3 * cs);
                default -> Math.max(512, cs / 32) * (long) rnd.nextInt(1, 40);
            });
            int kind = rnd.nextInt(100);
            if (kind < 50) {
                byte[] data = new byte[(int) len];
                rnd.nextBytes(data);
                device.write(off, ByteBuffer.wrap(data), 0);
                System.arraycopy(data, 0, model, (int) off, data.length);
            } else if (kind < 65) {
                int flags = (rnd.nextBoolean() ? WriteFlags.NO_HOLE : 0)
                        | (rnd.nextInt(4) == 0 ? WriteFlags.FAST_ZERO : 0);
                try {
                    device.writeZeroes(off, len, flags);
                    Arrays.fill(model, (int) off, (int) (off + len), (byte) 0);
                } catch (BlockException e) {
                    if (e.kind() != BlockErrorKind.NOT_SUPPORTED) {
                        throw e;
                    }
                }
            } else if (kind < 78) {
                device.discard(off, len, 0);
                long first = (off + cs - 1) / cs;
                long end = (off + len) / cs;
                if (off + len == size && size % cs != 0 && end * cs >= off) {
                    end++;
                }
                for (long c = first; c < end; c++) {
                    if (version < 3 && c * cs < backingSize) {
                        continue;
                    }
                    Arrays.fill(model, (int) (c * cs), (int) Math.min((c + 1) * cs, size), (byte) 0);
                }
            } else if (kind < 85) {
                device.flush();
            } else {
                byte[] got = new byte[(int) len];
                device.read(off, ByteBuffer.wrap(got));
                if (!Arrays.equals(got, 0, got.length, model, (int) off, (int) (off + len))) {
                    throw new AssertionError("op " + op + ": read " + off + "+" + len + " differs from the model");
                }
            }
        }
    }
}
