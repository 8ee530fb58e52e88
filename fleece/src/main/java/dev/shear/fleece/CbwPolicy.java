package dev.shear.fleece;

/**
 * What happens when copying old data to the scratch target fails or takes longer than
 * {@link CbwLimits#cbwTimeout()} (design.md §The fleecing invariant; dirty-bitmaps.md §8.3, §8.4;
 * QEMU's {@code on-cbw-error}).
 */
public enum CbwPolicy {
    /**
     * The guest is never hurt (Shear's default, unlike QEMU): the guest write goes through without
     * the copy, the snapshot is marked broken with the reason, and every later read of the snapshot
     * view fails with {@link dev.shear.block.BlockErrorKind#IO} (EIO, where QEMU sends EINVAL).
     */
    BREAK_SNAPSHOT,
    /**
     * The guest write fails with the copy's error (NO_SPACE → ENOSPC, IO → EIO), the live device is
     * left untouched, and the snapshot stays valid (QEMU's default).
     */
    BREAK_GUEST_WRITE
}
