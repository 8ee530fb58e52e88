package dev.shear.fleece.job;

import dev.shear.block.BlockCapabilities;
import dev.shear.block.BlockDevice;
import dev.shear.block.BlockException;
import dev.shear.block.ExtentSink;
import dev.shear.block.ReadSegmentSink;
import dev.shear.block.ZeroReportListener;
import dev.shear.fleece.SnapshotView;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The device a pull backup's snapshot export serves: the {@link SnapshotView}, with every range the
 * client has consumed reported to the job (progress): each successful read, and each range a
 * block-status reply told the client reads as zeros ({@link ZeroReportListener}; the server calls it
 * with exactly what the reply carried), since clients such as nbdcopy skip those instead of reading
 * them. TRIM is accepted ("I have read this range", aligned inward by the view). Writes and
 * write-zeroes fail with READ_ONLY (EPERM). Capabilities say canWrite so that an NBD export offers TRIM
 * at all (QEMU exports its fleecing node writable for the same reason); the device itself never changes
 * the snapshot. Closing does not end the snapshot: the job does.
 */
final class SnapshotExportDevice implements BlockDevice, ZeroReportListener {
    /** Receives each range the client has consumed: read, or been told reads as zeros. */
    interface ReadListener {
        void onRead(long offset, long length);
    }

    private final SnapshotView view;
    private final ReadListener listener;
    private final BlockCapabilities capabilities;

    SnapshotExportDevice(SnapshotView view, ReadListener listener) {
        this.view = view;
        this.listener = listener;
        BlockCapabilities c = view.capabilities();
        this.capabilities = new BlockCapabilities(true, false, false, true, false, false, c.canMultiConn(),
                c.minimumBlockSize(), c.preferredBlockSize(), c.maximumBlockSize());
    }

    @Override
    public String name() {
        return view.name();
    }

    @Override
    public long size() {
        return view.size();
    }

    @Override
    public BlockCapabilities capabilities() {
        return capabilities;
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        int length = dst.remaining();
        view.read(offset, dst);
        listener.onRead(offset, length);
    }

    @Override
    public void readSegments(long offset, long length, ReadSegmentSink sink) throws IOException {
        view.readSegments(offset, length, sink);
        listener.onRead(offset, length);
    }

    @Override
    public void blockStatus(long offset, long length, ExtentSink sink) throws IOException {
        view.blockStatus(offset, length, sink);
    }

    /** The client was told [offset, offset + length) reads as zeros: it need not read it. */
    @Override
    public void zeroReported(long offset, long length) {
        listener.onRead(offset, length);
    }

    @Override
    public void write(long offset, ByteBuffer src, int flags) throws IOException {
        throw BlockException.readOnly(name(), "write to a backup snapshot");
    }

    @Override
    public void writeZeroes(long offset, long length, int flags) throws IOException {
        throw BlockException.readOnly(name(), "write zeroes to a backup snapshot");
    }

    @Override
    public void discard(long offset, long length, int flags) throws IOException {
        view.discard(offset, length, flags);
    }

    @Override
    public void flush() {
        // Nothing to make durable: the snapshot is read-only.
    }

    @Override
    public void close() {
        // The job owns the view.
    }
}
