package dev.shear.qcow2;

import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Objects;

/**
 * One internal snapshot: an entry of the snapshot table (qcow2-format.md §8).
 *
 * @param id            unique ID string, e.g. "1"
 * @param name          snapshot name
 * @param l1TableOffset cluster-aligned offset of the snapshot's L1 table
 * @param l1Size        entries of that L1 table
 * @param dateSeconds   creation time, seconds since the epoch (unsigned 32-bit on disk)
 * @param dateNanos     nanoseconds part of the creation time
 * @param vmClockNanos  guest run time when taken
 * @param vmStateSize   VM state bytes (64-bit extra field when present, else the 32-bit one)
 * @param diskSize      virtual size when taken, -1 if the entry does not record it
 * @param icount        record/replay instruction count, -1 if disabled or absent
 * @param extraData     extra data past the 24 bytes this class knows, preserved verbatim (copied)
 */
public record Qcow2Snapshot(String id, String name, long l1TableOffset, int l1Size, long dateSeconds,
        int dateNanos, long vmClockNanos, long vmStateSize, long diskSize, long icount, byte[] extraData) {

    public Qcow2Snapshot {
        Objects.requireNonNull(id, "id");
        Objects.requireNonNull(name, "name");
        extraData = extraData == null ? new byte[0] : extraData.clone();
    }

    /** A copy of the unknown extra data. */
    @Override
    public byte[] extraData() {
        return extraData.clone();
    }

    /**
     * Finds a snapshot as QEMU does for {@code qemu-img snapshot} and {@code qemu-nbd -l}: first the
     * one whose ID equals {@code idOrName}, then the first whose name does. Returns null if none.
     */
    public static Qcow2Snapshot find(List<Qcow2Snapshot> snapshots, String idOrName) {
        for (Qcow2Snapshot s : snapshots) {
            if (s.id.equals(idOrName)) {
                return s;
            }
        }
        for (Qcow2Snapshot s : snapshots) {
            if (s.name.equals(idOrName)) {
                return s;
            }
        }
        return null;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Qcow2Snapshot s && id.equals(s.id) && name.equals(s.name)
                && l1TableOffset == s.l1TableOffset && l1Size == s.l1Size && dateSeconds == s.dateSeconds
                && dateNanos == s.dateNanos && vmClockNanos == s.vmClockNanos && vmStateSize == s.vmStateSize
                && diskSize == s.diskSize && icount == s.icount && Arrays.equals(extraData, s.extraData);
    }

    @Override
    public int hashCode() {
        return 31 * Objects.hash(id, name, l1TableOffset, l1Size, dateSeconds, dateNanos, vmClockNanos, vmStateSize,
                diskSize, icount) + Arrays.hashCode(extraData);
    }

    @Override
    public String toString() {
        return "Qcow2Snapshot[id=" + id + ", name=" + name + ", l1TableOffset=0x" + Long.toHexString(l1TableOffset)
                + ", l1Size=" + l1Size + ", dateSeconds=" + dateSeconds + ", dateNanos=" + dateNanos
                + ", vmClockNanos=" + vmClockNanos + ", vmStateSize=" + vmStateSize + ", diskSize=" + diskSize
                + ", icount=" + icount + ", extraData=" + HexFormat.of().formatHex(extraData) + "]";
    }
}
