package dev.shear.block;

import java.nio.channels.FileChannel;

/**
 * Raw bytes lying contiguously in a file: {@code count} bytes at {@code position} of {@code channel}.
 * The channel stays owned by the device; it is valid until the device is closed.
 */
public record FileSpan(FileChannel channel, long position, long length) implements ReadSegment {
}
