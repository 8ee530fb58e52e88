package dev.shear.qcow2;

import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import java.io.IOException;
import java.nio.ByteBuffer;

/** Positional writes and fsyncs of image metadata, their I/O errors reported as {@link BlockException}. */
final class MetadataIo {
    private MetadataIo() {
    }

    /** Writes {@code data} at {@code hostOffset}; a failure is reported as a {@code what} error there. */
    static void write(ImageFile file, String resource, long hostOffset, ByteBuffer data, String what)
            throws IOException {
        try {
            file.write(hostOffset, data);
        } catch (IOException e) {
            throw BlockException.io(resource, hostOffset, what, e);
        }
    }

    /** fsyncs {@code file}; a failure is reported as an {@code fsync} error. */
    static void sync(ImageFile file, String resource) throws IOException {
        try {
            file.sync();
        } catch (IOException e) {
            throw BlockException.io(resource, -1, "fsync", e);
        }
    }
}
