package dev.shear.qcow2;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads and encodes the snapshot table (qcow2-format.md §8; QEMU qcow2_read_snapshots,
 * qcow2_write_snapshots).
 *
 * <p>Entry layout (each entry starts 8-aligned):
 * <pre>
 *   0 u64 l1_table_offset     8 u32 l1_size          12 u16 id_str_size   14 u16 name_size
 *  16 u32 date_sec           20 u32 date_nsec        24 u64 vm_clock_nsec 32 u32 vm_state_size
 *  36 u32 extra_data_size    40 extra data (E)       40+E id (I)          40+E+I name (N), pad to 8
 * extra data: 40 u64 vm_state_size_large | 48 u64 disk_size | 56 u64 icount | unknown bytes...
 * </pre>
 * Checks per entry (each error names the snapshot index, the field and its file offset): table
 * within 64 MiB, extra_data_size <= 1024 and >= 16 in v3 images, L1 offset cluster-aligned with an
 * end below 2^63, l1_size <= 4 Mi entries, ID and name valid UTF-8.
 */
final class SnapshotTable {
    /** Known extra data: vm_state_size_large, disk_size, icount. */
    static final int KNOWN_EXTRA = 24;
    /** v3 entries must carry at least vm_state_size_large and disk_size. */
    static final int V3_MIN_EXTRA = 16;

    private SnapshotTable() {
    }

    /**
     * Reads {@code nb_snapshots} entries at {@code snapshots_offset}. Each entry is read in two
     * bounded reads (40 bytes, then at most 1024 + 2 * 65535 bytes), after its fixed part is checked.
     */
    static List<Qcow2Snapshot> read(ImageFile file, Qcow2Header header, String resource) throws IOException {
        List<Qcow2Snapshot> out = new ArrayList<>(Math.min(header.nbSnapshots(), 1024));
        long start = header.snapshotsOffset();
        long offset = start;
        for (int i = 0; i < header.nbSnapshots(); i++) {
            // Entries are padded to 8; QEMU rounds up before each one rather than trusting the padding.
            offset = (offset + 7) & ~7L;
            ByteBuffer h = ByteBuffer.allocate(Qcow2Limits.SNAPSHOT_HEADER_BYTES);
            checkTableSize(offset + h.capacity() - start, i, offset, resource);
            file.read(offset, h);
            long extraSize = Integer.toUnsignedLong(h.getInt(36));
            int idSize = Short.toUnsignedInt(h.getShort(12));
            int nameSize = Short.toUnsignedInt(h.getShort(14));
            if (extraSize > Qcow2Limits.MAX_SNAPSHOT_EXTRA) {
                throw BlockException.format(resource, offset + 36,
                        "snapshot %d: extra_data_size: %d (expected: <= %d)", i, extraSize,
                        Qcow2Limits.MAX_SNAPSHOT_EXTRA);
            }
            if (header.version() >= 3 && extraSize < V3_MIN_EXTRA) {
                throw BlockException.format(resource, offset + 36,
                        "snapshot %d: extra_data_size: %d (expected: >= %d in a version 3 image)", i, extraSize,
                        V3_MIN_EXTRA);
            }
            // Bounded: <= 1024 + 2 * 65535 bytes, and the running table size is checked before reading.
            int varSize = (int) extraSize + idSize + nameSize;
            long end = offset + Qcow2Limits.SNAPSHOT_HEADER_BYTES + varSize;
            checkTableSize(end - start, i, offset, resource);
            ByteBuffer v = ByteBuffer.allocate(varSize);
            file.read(offset + Qcow2Limits.SNAPSHOT_HEADER_BYTES, v);
            out.add(decodeEntry(h.flip(), v.flip(), i, offset, header.clusterBits(), resource));
            offset = end;
        }
        return List.copyOf(out);
    }

    private static void checkTableSize(long bytes, int index, long offset, String resource) throws BlockException {
        if (bytes > Qcow2Limits.MAX_SNAPSHOT_TABLE_BYTES) {
            throw BlockException.format(resource, offset,
                    "snapshot %d: snapshot table size: %d bytes so far (expected: <= %d)", index, bytes,
                    Qcow2Limits.MAX_SNAPSHOT_TABLE_BYTES);
        }
    }

    private static Qcow2Snapshot decodeEntry(ByteBuffer h, ByteBuffer v, int index, long offset, int clusterBits,
            String resource) throws BlockException {
        long l1Offset = h.getLong(0);
        long l1Size = Integer.toUnsignedLong(h.getInt(8));
        int idSize = Short.toUnsignedInt(h.getShort(12));
        int nameSize = Short.toUnsignedInt(h.getShort(14));
        long dateSeconds = Integer.toUnsignedLong(h.getInt(16));
        int dateNanos = h.getInt(20);
        long vmClock = h.getLong(24);
        long vmState = Integer.toUnsignedLong(h.getInt(32));
        int extraSize = h.getInt(36);
        if (l1Size > Qcow2Limits.MAX_L1_ENTRIES) {
            throw BlockException.format(resource, offset + 8, "snapshot %d: l1_size: %d (expected: <= %d)", index,
                    l1Size, Qcow2Limits.MAX_L1_ENTRIES);
        }
        HeaderDecoder.checkTable(l1Offset, l1Size * 8, 1 << clusterBits, offset,
                "snapshot " + index + ": l1_table_offset", resource);
        // Known extra fields exist only as far as extra_data_size reaches; the rest read as absent (-1).
        long diskSize = -1;
        long icount = -1;
        if (extraSize >= 8) {
            vmState = v.getLong(0);
        }
        if (extraSize >= 16) {
            diskSize = v.getLong(8);
        }
        if (extraSize >= KNOWN_EXTRA) {
            icount = v.getLong(16);
        }
        byte[] unknown = new byte[Math.max(0, extraSize - KNOWN_EXTRA)];
        v.get(KNOWN_EXTRA, unknown, 0, unknown.length);
        long idOffset = offset + Qcow2Limits.SNAPSHOT_HEADER_BYTES + extraSize;
        String id = HeaderDecoder.utf8(v, extraSize, idSize, idOffset, resource, "snapshot " + index + ": id");
        String name = HeaderDecoder.utf8(v, extraSize + idSize, nameSize, idOffset + idSize, resource,
                "snapshot " + index + ": name");
        return new Qcow2Snapshot(id, name, l1Offset, (int) l1Size, dateSeconds, dateNanos, vmClock, vmState,
                diskSize, icount, unknown);
    }

    /** Bytes one entry takes in the table, padding included. */
    static int entrySize(Qcow2Snapshot s) {
        int extra = extraSize(s);
        int raw = Qcow2Limits.SNAPSHOT_HEADER_BYTES + extra + utf8Length(s.id()) + utf8Length(s.name());
        return (raw + 7) & ~7;
    }

    /**
     * Encodes the table for writing at a cluster-aligned offset; each entry padded to 8. Extra data:
     * 24 known bytes plus the unknown ones when {@code diskSize >= 0}; only vm_state_size_large when
     * the disk size is unknown (then unknown extra data cannot be placed and is refused).
     *
     * @throws IllegalArgumentException if an entry exceeds a field or the table exceeds 64 MiB
     */
    static ByteBuffer encode(List<Qcow2Snapshot> snapshots) {
        if (snapshots.size() > Qcow2Limits.MAX_SNAPSHOTS) {
            throw new IllegalArgumentException("nb_snapshots: " + snapshots.size() + " (expected: <= 65536)");
        }
        long total = 0;
        for (Qcow2Snapshot s : snapshots) {
            total += entrySize(s);
        }
        if (total > Qcow2Limits.MAX_SNAPSHOT_TABLE_BYTES) {
            throw new IllegalArgumentException("snapshot table size: " + total + " (expected: <= 64 MiB)");
        }
        ByteBuffer b = ByteBuffer.allocate((int) total);
        for (Qcow2Snapshot s : snapshots) {
            int start = b.position();
            byte[] id = s.id().getBytes(StandardCharsets.UTF_8);
            byte[] name = s.name().getBytes(StandardCharsets.UTF_8);
            int extra = extraSize(s);
            long vmState = s.vmStateSize();
            b.putLong(s.l1TableOffset()).putInt(s.l1Size()).putShort((short) id.length).putShort((short) name.length)
                    .putInt((int) s.dateSeconds()).putInt(s.dateNanos()).putLong(s.vmClockNanos())
                    .putInt(vmState >= 0 && vmState <= 0xffffffffL ? (int) vmState : 0).putInt(extra);
            b.putLong(vmState);
            if (extra >= KNOWN_EXTRA) {
                b.putLong(s.diskSize()).putLong(s.icount()).put(s.extraData());
            }
            b.put(id).put(name);
            b.position(start + entrySize(s));
        }
        return b.flip();
    }

    private static int extraSize(Qcow2Snapshot s) {
        int unknown = s.extraData().length;
        if (s.diskSize() < 0) {
            if (unknown != 0) {
                throw new IllegalArgumentException("snapshot " + s.id() + ": unknown extra data without disk size "
                        + "(expected: diskSize >= 0)");
            }
            return 8;
        }
        int extra = KNOWN_EXTRA + unknown;
        if (extra > Qcow2Limits.MAX_SNAPSHOT_EXTRA) {
            throw new IllegalArgumentException("snapshot " + s.id() + ": extra_data_size: " + extra
                    + " (expected: <= 1024)");
        }
        return extra;
    }

    private static int utf8Length(String s) {
        int n = s.getBytes(StandardCharsets.UTF_8).length;
        if (n > 0xffff) {
            throw new IllegalArgumentException("snapshot id or name: " + n + " bytes (expected: <= 65535)");
        }
        return n;
    }
}
