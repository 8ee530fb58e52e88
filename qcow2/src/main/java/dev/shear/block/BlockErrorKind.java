package dev.shear.block;

/**
 * The small, stable set of reasons a block operation fails. The NBD server maps each kind to a
 * wire errno in exactly one table (style.md §3); nothing else inspects exception messages.
 */
public enum BlockErrorKind {
    /** The underlying file failed (EIO). */
    IO,
    /** A caller passed an argument that can never be valid (EINVAL). */
    INVALID_ARGUMENT,
    /** The range lies outside the device (EINVAL for reads, ENOSPC for writes). */
    OUT_OF_RANGE,
    /** The host ran out of space (ENOSPC). */
    NO_SPACE,
    /** The device, or this open of it, is read-only (EPERM). */
    READ_ONLY,
    /** The image is not of the format it claims, or a structure is malformed at open. */
    INVALID_FORMAT,
    /** The image uses a feature Shear does not implement (an unknown incompatible bit, encryption). */
    UNSUPPORTED_FEATURE,
    /** Metadata found inconsistent during I/O; the range fails with EIO, writes are refused. */
    CORRUPT_IMAGE,
    /** The operation cannot be done cheaply here (FAST_ZERO) or at all. */
    NOT_SUPPORTED,
    /** The answer does not fit the caller's constraint (a DF read that cannot be one chunk). */
    OVERFLOW,
    /** The device is closing. */
    SHUTDOWN
}
