package dev.shear.nbd.server;

import dev.shear.block.BlockCapabilities;
import dev.shear.block.BlockDevice;
import dev.shear.nbd.protocol.NbdConstants;
import java.util.ArrayList;
import java.util.List;

/**
 * One export: a name, the device served and what the export offers (nbd-protocol.md §3, §7).
 *
 * @param name            export name (may be empty: the default export)
 * @param description     NBD_INFO_DESCRIPTION / LIST text, or null
 * @param device          the device at the top of the stack
 * @param readOnly        refuse writes even if the device accepts them
 * @param allocationDepth offer qemu:allocation-depth
 * @param bitmaps         the dirty bitmaps offered as qemu:dirty-bitmap:NAME
 * @param multiConn       more than one client may connect at once (qemu-nbd -e N, N &gt;= 2)
 * @param background      its requests are background work (a backup's snapshot): its connections are
 *                        served on the backup loops ({@link BackupLoop}), never on the guest's event
 *                        loops or I/O pool, so that a backup client does not delay the guest
 */
public record Export(String name, String description, BlockDevice device, boolean readOnly,
        boolean allocationDepth, DirtyBitmapSource bitmaps, boolean multiConn, boolean background) {

    /** A foreground export. */
    public Export(String name, String description, BlockDevice device, boolean readOnly,
            boolean allocationDepth, DirtyBitmapSource bitmaps, boolean multiConn) {
        this(name, description, device, readOnly, allocationDepth, bitmaps, multiConn, false);
    }

    public boolean writable() {
        return !readOnly && device.capabilities().canWrite();
    }

    /**
     * The transmission flags, truthful for this export (§3): writes-side bits only when writable,
     * DF only with structured replies, multi-conn only when the device shares one cache and several
     * clients may connect.
     */
    public int transmissionFlags(boolean structuredReplies) {
        BlockCapabilities caps = device.capabilities();
        int flags = NbdConstants.NBD_FLAG_HAS_FLAGS | NbdConstants.NBD_FLAG_SEND_FLUSH
                | NbdConstants.NBD_FLAG_SEND_CACHE;
        if (writable()) {
            flags |= NbdConstants.NBD_FLAG_SEND_WRITE_ZEROES;
            if (caps.canFua()) {
                flags |= NbdConstants.NBD_FLAG_SEND_FUA;
            }
            if (caps.canTrim()) {
                flags |= NbdConstants.NBD_FLAG_SEND_TRIM;
            }
            if (caps.canFastZero()) {
                flags |= NbdConstants.NBD_FLAG_SEND_FAST_ZERO;
            }
        } else {
            flags |= NbdConstants.NBD_FLAG_READ_ONLY;
        }
        if (structuredReplies) {
            flags |= NbdConstants.NBD_FLAG_SEND_DF;
        }
        if (multiConn && caps.canMultiConn()) {
            flags |= NbdConstants.NBD_FLAG_CAN_MULTI_CONN;
        }
        return flags;
    }

    /** Every context this export offers, in id order. */
    public List<MetaContext> contexts() {
        List<MetaContext> all = new ArrayList<>();
        all.add(new MetaContext.BaseAllocation());
        if (allocationDepth) {
            all.add(new MetaContext.AllocationDepth());
        }
        List<String> names = bitmaps.bitmapNames();
        for (int i = 0; i < names.size(); i++) {
            all.add(new MetaContext.DirtyBitmapContext(names.get(i), i));
        }
        return all;
    }
}
