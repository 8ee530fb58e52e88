package dev.shear.qcow2.bitmap;

/**
 * Named bounds on persistent bitmap structures (dirty-bitmaps.md §2-§3, qcow2-format.md §13), each
 * checked before anything is allocated. The two that the header also checks repeat
 * {@code Qcow2Limits}, which is private to its package.
 */
final class BitmapLimits {
    /** At most 65535 bitmaps per image. Same as QEMU QCOW2_MAX_BITMAPS. */
    static final int MAX_BITMAPS = 65535;
    /** Directory at most 1024 bytes per bitmap. Same as QEMU QCOW2_MAX_BITMAP_DIRECTORY_SIZE. */
    static final long MAX_DIRECTORY_BYTES = 1024L * MAX_BITMAPS;
    /** Names 1..1023 bytes. Same as QEMU BME_MAX_NAME_SIZE. */
    static final int MAX_NAME = 1023;
    /** Granularity at least 512 bytes. Same as QEMU BME_MIN_GRANULARITY_BITS. */
    static final int MIN_GRANULARITY_BITS = 9;
    /** Granularity at most 2 GiB. Same as QEMU BME_MAX_GRANULARITY_BITS. */
    static final int MAX_GRANULARITY_BITS = 31;
    /** Table entries at most 2^27. Same as QEMU BME_MAX_TABLE_SIZE. */
    static final long MAX_TABLE_ENTRIES = 0x8000000L;
    /** Data clusters of one bitmap cover at most 512 MiB. Same as QEMU BME_MAX_PHYS_SIZE. */
    static final long MAX_DATA_BYTES = 512L << 20;
    /** Fixed part of a directory entry before extra data and name. */
    static final int ENTRY_HEADER_BYTES = 24;

    private BitmapLimits() {
    }
}
