package dev.shear.fleece;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.Extent;
import dev.shear.block.ExtentCollector;
import dev.shear.block.WriteFlags;
import dev.shear.fleece.scratch.FaultyScratch;
import dev.shear.fleece.scratch.MemoryScratch;
import dev.shear.fleece.scratch.ScratchTarget;
import dev.shear.fleece.scratch.SpillCodec;
import dev.shear.fleece.scratch.SpillStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.concurrent.locks.LockSupport;
import java.util.stream.Stream;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.roaringbitmap.RoaringBitmap;

/**
 * Hammers the fleecing invariant (design.md §The fleecing invariant, verbatim):
 * <blockquote>
 * A reader of the snapshot must never see data written after the snapshot point. With per-cluster
 * locks: a writer takes the cluster exclusively, copies the old data if the snapshot still needs it,
 * marks it copied, releases, then writes the live image; a snapshot reader takes the cluster shared,
 * reads the target if copied and the live image otherwise, then releases. Discard and write-zeroes
 * on the live image go through the same path. Whole clusters are copied even for a partial write.
 * A discard on the snapshot export tells the server that the client has read that range: the copied
 * data is freed and later writes there are no longer copied. A test must hammer this invariant
 * (concurrent random writes on the live export and reads of the snapshot, byte-for-byte comparison
 * with the image as it was at the snapshot point).
 * </blockquote>
 *
 * <p>Per case: writer threads run without pause for the whole case — random partial-cluster writes,
 * multi-cluster writes, write-zeroes with and without NO_HOLE, discards — on a {@link MemoryDevice}
 * with real holes and zeros, through {@link CopyBeforeWrite} with a random (often tiny) lock-stripe
 * count, so clusters share stripes and ranges wrap. Meanwhile rounds of snapshots follow each other:
 * each round takes a snapshot under load (the model, a copy of the device, is taken inside the
 * snapshot barrier), lets reader threads read random unaligned ranges and block status of the view
 * while a "backup client" thread reads and discards a prefix, then sweeps the whole view and checks:
 * every byte equals the model (discarded clusters: the model or zeros, whole clusters); block status
 * never says zero where the model has data; a cluster is copied at most once and, in incremental
 * rounds, never outside the selection; failures happen exactly as the policy says. Some rounds inject
 * scratch failures. Seeded: {@code -Dshear.seed=N} replays a case's operations (not its interleaving).
 */
class CopyBeforeWriteStressTest {
    private static final long SEED = Long.getLong("shear.seed", 0x5eedL);
    private static final int CLUSTER = CbwLimits.MIN_CLUSTER_SIZE;
    /** 96 clusters and a short one: the last cluster is partial on purpose. */
    private static final int SIZE = 96 * CLUSTER + 20_000;
    private static final int CLUSTERS = (SIZE + CLUSTER - 1) / CLUSTER;
    private static final long CASE_MILLIS = 300;
    private static final int WRITERS = 2;
    private static final int READERS = 2;
    private static final int MIN_ROUNDS = 4;
    private static final int MIN_OPS_PER_ROUND = 20;

    @TempDir
    Path dir;

    enum ScratchKind { SPILL_LZ4, SPILL_ZSTD, SPILL_NONE, MEMORY }

    static Stream<Arguments> cases() {
        List<Arguments> list = new ArrayList<>();
        for (ScratchKind kind : ScratchKind.values()) {
            for (CbwPolicy policy : CbwPolicy.values()) {
                for (boolean incremental : new boolean[] {false, true}) {
                    list.add(Arguments.of(kind, policy, incremental));
                }
            }
        }
        return list.stream();
    }

    /** What one round checks against. */
    private record Round(int number, SnapshotView view, FaultyScratch scratch, byte[] model, BitSet covered,
            AtomicReferenceArray<Boolean> discarded, long failAtPut, String label) {
        boolean isDiscarded(long c) {
            return discarded.get((int) c) != null;
        }
    }

    @ParameterizedTest(name = "{0} {1} incremental={2}")
    @MethodSource("cases")
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void snapshotReadsShouldNeverSeeDataWrittenAfterTheSnapshotPoint(ScratchKind kind, CbwPolicy policy,
            boolean incremental) throws Exception {
        long seed = SEED ^ (kind.ordinal() * 31L + policy.ordinal() * 7L + (incremental ? 1 : 0)) * 0x9E3779B97F4A7C15L;
        SplittableRandom caseRandom = new SplittableRandom(seed);
        int stripes = 1 << (1 + caseRandom.nextInt(10));   // 2 .. 1024: tiny tables make ranges wrap
        String caseLabel = String.format("seed=%d (-Dshear.seed=%d) %s %s incremental=%s stripes=%d",
                seed, SEED, kind, policy, incremental, stripes);
        MemoryDevice live = initialDevice(caseRandom.split());
        CopyBeforeWrite cbw = new CopyBeforeWrite(live, stripes);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        AtomicReference<Round> current = new AtomicReference<>();
        AtomicLong writes = new AtomicLong();
        AtomicLong failedWrites = new AtomicLong();
        AtomicLong reads = new AtomicLong();
        volatileStop = false;

        List<Thread> writers = new ArrayList<>();
        for (int w = 0; w < WRITERS; w++) {
            SplittableRandom r = caseRandom.split();
            writers.add(start("writer-" + w, failure, caseLabel, current,
                    () -> writeLoop(cbw, policy, r, current, writes, failedWrites)));
        }
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(CASE_MILLIS);
        int rounds = 0;
        int brokenRounds = 0;
        try {
            while ((rounds < MIN_ROUNDS || System.nanoTime() < deadline) && failure.get() == null) {
                SplittableRandom rr = caseRandom.split();
                Round round = startRound(cbw, kind, policy, incremental, rounds, rr, caseLabel);
                current.set(round);
                long readsBefore = reads.get();
                long writesBefore = writes.get() + failedWrites.get();
                List<Thread> readers = new ArrayList<>();
                for (int i = 0; i < READERS; i++) {
                    SplittableRandom r = rr.split();
                    readers.add(start("reader-" + i, failure, caseLabel, current,
                            () -> readLoop(round, r, reads, current)));
                }
                SplittableRandom rc = rr.split();
                readers.add(start("client", failure, caseLabel, current, () -> backupClient(round, rc, current)));
                // A round lasts a few milliseconds and at least a minimum of work on both sides, so that a
                // loaded machine (2 cores shared) slows the test down rather than emptying it.
                long roundEnd = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(2 + rr.nextInt(15));
                long roundCap = System.nanoTime() + TimeUnit.SECONDS.toNanos(3);
                while (failure.get() == null && System.nanoTime() < roundCap
                        && (System.nanoTime() < roundEnd || reads.get() - readsBefore < MIN_OPS_PER_ROUND
                                || writes.get() + failedWrites.get() - writesBefore < MIN_OPS_PER_ROUND)) {
                    LockSupport.parkNanos(200_000);
                }
                current.set(null);   // readers finish their current operation and return
                for (Thread t : readers) {
                    t.join();
                }
                if (failure.get() == null) {
                    brokenRounds += round.view.isBroken() ? 1 : 0;
                    endRound(round, policy);
                }
                rounds++;
            }
        } finally {
            volatileStop = true;
            for (Thread t : writers) {
                t.join();
            }
            cbw.close();
        }
        Throwable t = failure.get();
        if (t != null) {
            fail(caseLabel + ": " + t, t);
        }
        assertTrue(rounds >= MIN_ROUNDS, caseLabel + ": only " + rounds + " rounds");
        System.out.printf("%s: %d rounds (%d broken), %d writes (%d failed as the policy says), %d reads%n",
                caseLabel, rounds, brokenRounds, writes.get(), failedWrites.get(), reads.get());
    }

    private static volatile boolean volatileStop;

    @FunctionalInterface
    private interface Body {
        void run() throws Exception;
    }

    /** Runs {@code body} on a new thread; its first failure, labelled with the round, fails the case. */
    private static Thread start(String name, AtomicReference<Throwable> failure, String caseLabel,
            AtomicReference<Round> current, Body body) {
        Round startedIn = current.get();
        Thread t = new Thread(() -> {
            try {
                body.run();
            } catch (Throwable e) {
                Round r = startedIn != null ? startedIn : current.get();
                failure.compareAndSet(null, new AssertionError(name + " in " + (r == null ? caseLabel : r.label)
                        + ": " + e.getMessage(), e));
            }
        }, name);
        t.setDaemon(true);
        t.start();
        return t;
    }

    /** Random clusters of data (random or repetitive), allocated zeros, holes, and partly written ones. */
    private static MemoryDevice initialDevice(SplittableRandom r) throws IOException {
        MemoryDevice d = new MemoryDevice("stress", SIZE);
        for (int c = 0; c < CLUSTERS; c++) {
            long start = (long) c * CLUSTER;
            int len = (int) Math.min(CLUSTER, SIZE - start);
            switch (r.nextInt(5)) {
                case 0 -> { }   // hole
                case 1 -> d.writeZeroes(start, len, WriteFlags.NO_HOLE);
                case 2 -> d.write(start + r.nextInt(len / 2), ByteBuffer.wrap(randomBytes(r, len / 4)), 0);
                case 3 -> d.write(start, ByteBuffer.wrap(repetitive(r, len)), 0);
                default -> d.write(start, ByteBuffer.wrap(randomBytes(r, len)), 0);
            }
        }
        return d;
    }

    private Round startRound(CopyBeforeWrite cbw, ScratchKind kind, CbwPolicy policy, boolean incremental,
            int number, SplittableRandom r, String caseLabel) throws IOException {
        ScratchTarget base = switch (kind) {
            case SPILL_LZ4 -> SpillStore.createTemp(dir, SpillCodec.LZ4, Long.MAX_VALUE);
            case SPILL_ZSTD -> SpillStore.createTemp(dir, SpillCodec.ZSTD, Long.MAX_VALUE);
            case SPILL_NONE -> SpillStore.createTemp(dir, SpillCodec.NONE, Long.MAX_VALUE);
            case MEMORY -> new MemoryScratch(Long.MAX_VALUE);
        };
        FaultyScratch scratch = new FaultyScratch(base);
        long failAt = -1;
        if (number % 3 == 2) {   // every third round injects failures
            if (policy == CbwPolicy.BREAK_SNAPSHOT) {
                failAt = r.nextInt(40);
                long at = failAt;
                scratch.failPuts(n -> n == at, BlockErrorKind.IO);
            } else {
                scratch.failPuts(n -> n % 5 == 4, r.nextBoolean() ? BlockErrorKind.IO : BlockErrorKind.NO_SPACE);
            }
        }
        BitSet covered = new BitSet(CLUSTERS);
        SnapshotOptions options;
        if (incremental) {
            for (int c = 0; c < CLUSTERS; c++) {
                if (r.nextInt(10) < 4) {
                    covered.set(c);
                }
            }
            CopySelection selection;
            if (r.nextBoolean()) {
                selection = CopySelection.dirty(covered, CLUSTER);
            } else {   // 4 KiB granularity: one random dirty granule per selected cluster
                RoaringBitmap granules = new RoaringBitmap();
                for (int c = covered.nextSetBit(0); c >= 0; c = covered.nextSetBit(c + 1)) {
                    int perCluster = CLUSTER / 4096;
                    int last = (int) Math.min(perCluster, (SIZE - (long) c * CLUSTER + 4095) / 4096);
                    granules.add(c * perCluster + r.nextInt(last));
                }
                selection = CopySelection.dirty(granules, 4096);
            }
            options = new SnapshotOptions(selection, policy, CbwLimits.DEFAULT);
        } else {
            covered.set(0, CLUSTERS);
            options = SnapshotOptions.full().withPolicy(policy);
        }
        byte[][] model = new byte[1][];
        MemoryDevice live = (MemoryDevice) cbw.live();
        SnapshotView view = cbw.startSnapshot(options, scratch, () -> {
            model[0] = live.contents();
            // The "was zero" decision trusts the live device's status: the double must never lie.
            String mismatch = live.statusMismatch();
            if (mismatch != null) {
                throw new AssertionError("live device at the snapshot point: " + mismatch);
            }
        });
        String label = caseLabel + " round=" + number + (failAt >= 0 ? " failAtPut=" + failAt : "");
        return new Round(number, view, scratch, model[0], covered, new AtomicReferenceArray<>(CLUSTERS), failAt,
                label);
    }

    private static void writeLoop(CopyBeforeWrite cbw, CbwPolicy policy, SplittableRandom r,
            AtomicReference<Round> current, AtomicLong writes, AtomicLong failedWrites) throws IOException {
        byte[] buf = new byte[8 * CLUSTER];
        while (!volatileStop) {
            int op = r.nextInt(10);
            long offset = r.nextLong(SIZE);
            int maxLen = op == 0 ? 8 * CLUSTER : 5 * CLUSTER / 2;
            int length = (int) Math.min(SIZE - offset, 1 + r.nextInt(maxLen));
            try {
                if (op < 7) {
                    if (r.nextBoolean()) {
                        r.nextBytes(buf);
                    } else {
                        java.util.Arrays.fill(buf, 0, length, (byte) r.nextInt());
                    }
                    cbw.write(offset, ByteBuffer.wrap(buf, 0, length), 0);
                } else if (op < 9) {
                    cbw.writeZeroes(offset, length, r.nextBoolean() ? WriteFlags.NO_HOLE : 0);
                } else {
                    cbw.discard(offset, length, 0);
                }
                writes.incrementAndGet();
            } catch (BlockException e) {
                // Only BREAK_GUEST_WRITE may hurt the guest, and only with the copy's (injected) error.
                boolean expected = policy == CbwPolicy.BREAK_GUEST_WRITE
                        && (e.kind() == BlockErrorKind.IO || e.kind() == BlockErrorKind.NO_SPACE)
                        && e.getMessage().contains("injected failure");
                if (!expected) {
                    throw e;
                }
                failedWrites.incrementAndGet();
            }
        }
    }

    /** Random unaligned reads and block-status queries of the view, checked against the model. */
    private static void readLoop(Round round, SplittableRandom r, AtomicLong reads, AtomicReference<Round> current)
            throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(4 * CLUSTER);
        while (running(round, current)) {
            long offset;
            int length;
            boolean touchUncovered;
            if (r.nextInt(8) == 0) {
                offset = r.nextLong(SIZE);
                length = (int) Math.min(SIZE - offset, 1 + r.nextInt(4 * CLUSTER));
                touchUncovered = !allCovered(round, offset, length);
            } else {
                long c = pickCovered(round, r);
                if (c < 0) {
                    return;
                }
                long runEnd = c;
                while (runEnd + 1 < CLUSTERS && round.covered.get((int) runEnd + 1) && runEnd - c < 3) {
                    runEnd++;
                }
                long start = c * CLUSTER;
                long end = Math.min(SIZE, (runEnd + 1) * CLUSTER);
                offset = start + r.nextLong(end - start);
                length = (int) (1 + r.nextLong(end - offset));
                touchUncovered = false;
            }
            if (r.nextInt(4) == 0) {
                checkStatus(round, offset, length);
            } else {
                buf.clear().limit(length);
                checkRead(round, offset, buf, touchUncovered);
            }
            reads.incrementAndGet();
        }
    }

    /** Reads the view sequentially in 1 MiB pieces, checks, and discards what it read in the first half. */
    private static void backupClient(Round round, SplittableRandom r, AtomicReference<Round> current)
            throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(1 << 20);
        long pos = 0;
        while (pos < SIZE && running(round, current)) {
            long c = pos / CLUSTER;
            if (!round.covered.get((int) c)) {
                pos += CLUSTER;
                continue;
            }
            int length = (int) Math.min(Math.min(SIZE - pos, CLUSTER * (1 + r.nextInt(4))), buf.capacity());
            while (!allCovered(round, pos, length)) {
                length -= CLUSTER;
            }
            buf.clear().limit(length);
            checkRead(round, pos, buf, false);
            if (pos < SIZE / 2) {
                // Announce before discarding: a reader that sees zeros there then finds the mark set.
                for (long k = (pos + CLUSTER - 1) / CLUSTER; k < (pos + length) / CLUSTER; k++) {
                    round.discarded.set((int) k, Boolean.TRUE);
                }
                round.view.discard(pos, length, 0);
            }
            pos += length;
        }
    }

    private static void checkRead(Round round, long offset, ByteBuffer buf, boolean touchUncovered)
            throws IOException {
        int length = buf.remaining();
        try {
            round.view.read(offset, buf);
        } catch (BlockException e) {
            if (e.kind() == BlockErrorKind.IO && round.view.isBroken()) {
                assertTrue(e.getMessage().contains("snapshot broken"), e.getMessage());
                return;
            }
            if (e.kind() == BlockErrorKind.INVALID_ARGUMENT && touchUncovered) {
                return;
            }
            if (e.kind() == BlockErrorKind.SHUTDOWN) {
                return;
            }
            throw e;
        }
        if (touchUncovered) {
            fail("read of [" + offset + ", +" + length + ") touches clusters outside the selection but succeeded");
        }
        byte[] got = buf.array();
        compare(round, offset, got, length);
    }

    /** Byte-for-byte against the model; a discarded cluster may instead be all zeros. */
    private static void compare(Round round, long offset, byte[] got, int length) {
        for (int i = 0; i < length;) {
            long pos = offset + i;
            long c = pos / CLUSTER;
            int n = (int) Math.min(length - i, (c + 1) * CLUSTER - pos);
            int mismatch = java.util.Arrays.mismatch(got, i, i + n, round.model, (int) pos, (int) pos + n);
            if (mismatch >= 0) {
                boolean zeros = allZero(got, i, n);
                if (!(round.isDiscarded(c) && zeros)) {
                    long at = pos + mismatch;
                    fail(String.format("snapshot byte at %d (cluster %d, state %s, discarded %s): 0x%02x"
                            + " (expected: 0x%02x as at the snapshot point); read [%d, +%d)",
                            at, c, CopyState.name(round.view.state().copyState.get(c)), round.isDiscarded(c),
                            got[i + mismatch], round.model[(int) at], offset, length));
                }
            }
            i += n;
        }
    }

    /** Block status never reports zero where the snapshot has data. */
    private static void checkStatus(Round round, long offset, int length) throws IOException {
        ExtentCollector collector = new ExtentCollector(offset, offset + length, Integer.MAX_VALUE);
        try {
            round.view.blockStatus(offset, length, collector);
        } catch (BlockException e) {
            if (e.kind() == BlockErrorKind.IO && round.view.isBroken() || e.kind() == BlockErrorKind.SHUTDOWN) {
                return;
            }
            throw e;
        }
        List<Extent> extents = collector.extents();
        assertFalse(extents.isEmpty());
        assertEquals(offset + length, extents.get(extents.size() - 1).end(), "status covers the range");
        for (Extent e : extents) {
            if (!e.isZero()) {
                continue;
            }
            for (long p = e.offset(); p < e.end(); p++) {
                long c = p / CLUSTER;
                if (round.model[(int) p] != 0 && !round.isDiscarded(c) && round.covered.get((int) c)) {
                    fail(String.format("block status says zero at %d (cluster %d, state %s) in %s, but the"
                            + " snapshot has 0x%02x there", p, c, CopyState.name(round.view.state().copyState.get(c)),
                            e, round.model[(int) p]));
                }
            }
        }
    }

    /** After the round: sweep, check copy counts and the policy, end the snapshot. */
    private static void endRound(Round round, CbwPolicy policy) throws IOException {
        SnapshotView view = round.view;
        ByteBuffer buf = ByteBuffer.allocate(1 << 20);
        for (long pos = 0; pos < SIZE; pos += CLUSTER) {
            int length = (int) Math.min(CLUSTER, SIZE - pos);
            buf.clear().limit(length);
            checkRead(round, pos, buf, !round.covered.get((int) (pos / CLUSTER)));
        }
        for (int c = 0; c < CLUSTERS; c++) {
            long puts = round.scratch.putsOf(c);
            assertTrue(puts <= 1, round.label + ": cluster " + c + " copied " + puts + " times");
            if (!round.covered.get(c)) {
                assertEquals(0, puts, round.label + ": cluster " + c + " is outside the selection but was copied");
            }
        }
        if (policy == CbwPolicy.BREAK_GUEST_WRITE) {
            assertFalse(view.isBroken(), round.label + ": " + view.brokenReason());
        } else if (round.failAtPut >= 0 && round.scratch.puts() > round.failAtPut) {
            assertTrue(view.isBroken(), round.label + ": a copy failed but the snapshot is not broken");
            assertTrue(view.brokenReason().contains("injected failure"), view.brokenReason());
        } else {
            assertFalse(view.isBroken(), round.label + ": " + view.brokenReason());
        }
        view.close();
    }

    /** Whether {@code round} is still the running one. */
    private static boolean running(Round round, AtomicReference<Round> current) {
        return !volatileStop && current.get() == round;
    }

    private static boolean allZero(byte[] a, int from, int n) {
        for (int i = from; i < from + n; i++) {
            if (a[i] != 0) {
                return false;
            }
        }
        return true;
    }

    private static boolean allCovered(Round round, long offset, long length) {
        for (long c = offset / CLUSTER; c <= (offset + length - 1) / CLUSTER; c++) {
            if (!round.covered.get((int) c)) {
                return false;
            }
        }
        return true;
    }

    private static long pickCovered(Round round, SplittableRandom r) {
        int from = r.nextInt(CLUSTERS);
        int c = round.covered.nextSetBit(from);
        if (c < 0) {
            c = round.covered.nextSetBit(0);
        }
        return c;
    }

    private static byte[] randomBytes(SplittableRandom r, int n) {
        byte[] b = new byte[n];
        r.nextBytes(b);
        return b;
    }

    private static byte[] repetitive(SplittableRandom r, int n) {
        byte[] b = new byte[n];
        byte v = (byte) (1 + r.nextInt(255));
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (v + (i >> 9));
        }
        return b;
    }
}
