package dev.shear.block;

/**
 * How to produce one piece of a read without going through {@link BlockDevice#read}: straight from a
 * file (zero-copy, sendfile), as zeros (an NBD hole chunk), or by calling read() for the piece.
 * A device describes a read as consecutive segments covering the requested range exactly.
 */
public sealed interface ReadSegment permits FileSpan, ReadSegment.Zeros, ReadSegment.Copy {

    /** Number of guest bytes this segment covers. */
    long length();

    /** The range reads as zeros. */
    record Zeros(long length) implements ReadSegment {
    }

    /** The range must be read with {@link BlockDevice#read} at this guest offset (compressed, backing...). */
    record Copy(long guestOffset, long length) implements ReadSegment {
    }
}
