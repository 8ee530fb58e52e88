package dev.shear.nbd.server;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.shear.block.BlockCapabilities;
import dev.shear.block.BlockDevice;
import dev.shear.block.Extent;
import dev.shear.block.ExtentSink;
import dev.shear.block.ZeroReportListener;
import dev.shear.nbd.protocol.NbdReply;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The per-extent status values of base:allocation and qemu:allocation-depth, and the zero ranges a
 * {@link ZeroReportListener} device is told about: exactly what the reply carries.
 */
class BlockStatusBuilderTest {
    private static final int K64 = 64 * 1024;
    private static final MetaContext BASE = new MetaContext.BaseAllocation();

    /**
     * [0, 64K) hole, [64K, 128K) zero cluster, [128K, 192K) data, [192K, 256K) zero cluster; records the
     * zero reports as "offset+length" with adjacent reports merged.
     */
    private static final class ZeroCountingDevice implements BlockDevice, ZeroReportListener {
        final List<long[]> reports = new ArrayList<>();
        private final List<Extent> extents = List.of(Extent.hole(0, K64), Extent.zero(K64, K64, 0),
                Extent.data(2L * K64, K64, 0, 1 << 20), Extent.zero(3L * K64, K64, 0));

        @Override
        public String name() {
            return "fake";
        }

        @Override
        public long size() {
            return 4L * K64;
        }

        @Override
        public BlockCapabilities capabilities() {
            return BlockCapabilities.readOnly(K64);
        }

        @Override
        public void read(long offset, ByteBuffer dst) {
            dst.position(dst.limit());
        }

        @Override
        public void blockStatus(long offset, long length, ExtentSink sink) throws IOException {
            for (Extent e : extents) {
                if (e.end() > offset && e.offset() < offset + length
                        && !sink.accept(e.clip(Math.max(offset, e.offset()), Math.min(offset + length, e.end())))) {
                    return;
                }
            }
        }

        @Override
        public void close() {
            // nothing held
        }

        @Override
        public void zeroReported(long offset, long length) {
            if (!reports.isEmpty() && reports.get(reports.size() - 1)[1] == offset) {
                reports.get(reports.size() - 1)[1] = offset + length;
            } else {
                reports.add(new long[] {offset, offset + length});
            }
        }

        String reported() {
            StringBuilder b = new StringBuilder();
            for (long[] r : reports) {
                b.append(r[0] / 1024).append("K-").append(r[1] / 1024).append("K ");
            }
            return b.toString().trim();
        }
    }

    private static Export export(BlockDevice d, DirtyBitmapSource bitmaps) {
        return new Export("e", null, d, true, true, bitmaps, false);
    }

    @Test
    void zeroReportsShouldCoverTheZeroExtentsOfTheAnswer() throws IOException {
        ZeroCountingDevice d = new ZeroCountingDevice();
        BlockStatusBuilder.build(1, export(d, DirtyBitmapSource.NONE), List.of(BASE), 0, 4L * K64, false);
        assertEquals("0K-128K 192K-256K", d.reported());
    }

    @Test
    void zeroReportsWithReqOneShouldStopAtTheOneExtentSent() throws IOException {
        // The hole and the zero cluster are one HOLE|ZERO run on the wire but two engine extents: with
        // REQ_ONE the collector keeps only the first, and the client is told about [0, 64K) only.
        ZeroCountingDevice d = new ZeroCountingDevice();
        List<NbdReply> r = BlockStatusBuilder.build(1, export(d, DirtyBitmapSource.NONE), List.of(BASE), 0,
                4L * K64, true);
        assertEquals(K64, ((NbdReply.BlockStatusChunk) r.get(0)).lengths()[0]);
        assertEquals("0K-64K", d.reported());
        ZeroCountingDevice data = new ZeroCountingDevice();
        BlockStatusBuilder.build(1, export(data, DirtyBitmapSource.NONE), List.of(BASE), 2L * K64, K64, true);
        assertEquals("", data.reported());
    }

    @Test
    void zeroReportsShouldBeClippedToTheCommonEndOfAllContexts() throws IOException {
        DirtyBitmapSource bitmap = new DirtyBitmapSource() {
            @Override
            public List<String> bitmapNames() {
                return List.of("b");
            }

            @Override
            public void dirtyRuns(String name, long offset, long length, RunSink sink) {
                if (sink.accept(32 * 1024, true)) {
                    sink.accept(length, false);
                }
            }
        };
        ZeroCountingDevice d = new ZeroCountingDevice();
        List<MetaContext> both = List.of(BASE, new MetaContext.DirtyBitmapContext("b", 0));
        BlockStatusBuilder.build(1, export(d, bitmap), both, 0, 4L * K64, true);
        assertEquals("0K-32K", d.reported());
    }

    @Test
    void zeroReportsShouldNeedBaseAllocation() throws IOException {
        ZeroCountingDevice d = new ZeroCountingDevice();
        BlockStatusBuilder.build(1, export(d, DirtyBitmapSource.NONE), List.of(new MetaContext.AllocationDepth()),
                0, 4L * K64, false);
        assertEquals("", d.reported());
    }

    @Test
    void zeroClusterShouldBeHoleAndZeroAsQemuNbdReportsIt() {
        // Regression: a qcow2 zero cluster (allocated at depth 0, reads as zeros) went out as ZERO (2);
        // qemu-nbd 7.2 says HOLE|ZERO (3) because HOLE means "no DATA" there (NbdDifferentialTest).
        Extent zeroCluster = Extent.zero(0, 65536, 0);
        assertEquals(3, BlockStatusBuilder.status(zeroCluster, false));
        assertEquals(1, BlockStatusBuilder.status(zeroCluster, true), "allocation-depth: local");
    }

    @Test
    void dataAndUnallocatedShouldKeepTheirStatus() {
        assertEquals(0, BlockStatusBuilder.status(Extent.data(0, 4096, 1, 8192), false));
        assertEquals(2, BlockStatusBuilder.status(Extent.data(0, 4096, 1, 8192), true), "backing depth 2");
        assertEquals(3, BlockStatusBuilder.status(Extent.hole(0, 4096), false));
        assertEquals(0, BlockStatusBuilder.status(Extent.hole(0, 4096), true), "absent");
        // HOLE without ZERO (undefined contents) stays as it is.
        assertEquals(1, BlockStatusBuilder.status(new Extent(0, 4096, Extent.HOLE, Extent.UNALLOCATED, -1), false));
    }
}
