package dev.shear.block;

/**
 * Optional for a {@link BlockDevice} served over NBD: told which ranges a block-status reply reported
 * to a client as reading as zeros (base:allocation with NBD_STATE_ZERO, nbd-protocol.md §7.1), exactly
 * as the reply carries them — after the server clipped the answer to the request, to the other
 * contexts' common end and to its extent cap (REQ_ONE: one extent). A client may skip reading such a
 * range (nbdcopy and qemu-img convert do), so a device that counts what a client has consumed (a pull
 * backup's snapshot export) counts these too.
 *
 * <p>Called on the I/O thread that built the reply, before the reply is written; ranges are non-empty
 * and inside the device. Must be quick and must not throw.
 */
@FunctionalInterface
public interface ZeroReportListener {
    /** [offset, offset + length) was reported as reading as zeros. */
    void zeroReported(long offset, long length);
}
