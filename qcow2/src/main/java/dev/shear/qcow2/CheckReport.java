package dev.shear.qcow2;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.Consumer;

/**
 * The mutable tally of one check run: counters as in QEMU's {@code BdrvCheckResult}, the allocation
 * statistics ({@code BlockFragInfo}) and the message lines. Messages go to an optional sink as they are
 * found (so that a command line can stream them like qemu-img's stderr) and the first
 * {@link Qcow2Check#MAX_KEPT_MESSAGES} are kept for the {@link CheckResult}: memory stays bounded on an
 * image whose every entry is broken.
 *
 * <p>Not thread-safe: one check owns it.
 */
final class CheckReport {
    long corruptions;
    long leaks;
    long checkErrors;
    long allocatedClusters;
    long fragmentedClusters;
    long compressedClusters;
    long totalClusters;
    long imageEndOffset;
    long leaksFixed;
    long corruptionsFixed;
    /** Repair mode of this run ({@link Qcow2Repair}): what may be fixed; NONE for a plain check. */
    Qcow2Repair.Mode fix = Qcow2Repair.Mode.NONE;
    /** Refcount fixes found by this run: {cluster, new refcount}. */
    final List<long[]> refcountFixes = new ArrayList<>();
    /** Table entry fixes found by this run: {file offset of the 8-byte entry, new value}. */
    final List<long[]> entryFixes = new ArrayList<>();

    private final Consumer<String> sink;
    private final List<String> kept = new ArrayList<>();
    private long dropped;
    /** QEMU signals corruption once per open image ("further ... events will be suppressed"). */
    private boolean corruptionSignalled;

    CheckReport(Consumer<String> sink) {
        this.sink = sink;
    }

    /** Records one message line, formatted with {@link Locale#ROOT}. */
    void say(String format, Object... args) {
        String line = args.length == 0 ? format : String.format(Locale.ROOT, format, args);
        if (sink != null) {
            sink.accept(line);
        }
        if (kept.size() < Qcow2Check.MAX_KEPT_MESSAGES) {
            kept.add(line);
        } else {
            dropped++;
        }
    }

    /** A corruption with its message. */
    void corruption(String format, Object... args) {
        say(format, args);
        corruptions++;
    }

    /**
     * The line QEMU's {@code qcow2_signal_corruption} prints on a read-only image, only the first time
     * (it does not count as a finding; the caller counts what follows from it).
     */
    void signalCorruption(String format, Object... args) {
        if (!corruptionSignalled) {
            corruptionSignalled = true;
            say("qcow2: Image is corrupt: " + format + "; further non-fatal corruption events will be suppressed",
                    args);
        }
    }

    /** Builds the immutable result; {@code failure} null when the check ran to the end. */
    CheckResult result(String failure) {
        List<String> messages = kept;
        if (dropped > 0) {
            messages = new ArrayList<>(kept);
            messages.add("(" + dropped + " further messages not kept)");
        }
        return new CheckResult(corruptions, leaks, checkErrors, corruptionsFixed, leaksFixed,
                imageEndOffset, totalClusters,
                allocatedClusters, fragmentedClusters, compressedClusters, messages, failure);
    }
}
