package dev.shear.qcow2.compress;

/**
 * The qcow2 compression types (qcow2-format.md §2.3 {@code compression_type}, header byte 104; §7).
 * Names as {@code qemu-img info} spells them ("zlib" for deflate).
 */
public enum CompressionType {
    /** Raw deflate (RFC 1951), no zlib header; header value 0, also the meaning of an absent field. */
    DEFLATE(0, "zlib"),
    /** One zstd frame per cluster, no length prefix; header value 1, needs incompatible bit 3. */
    ZSTD(1, "zstd");

    private final int headerValue;
    private final String qemuName;

    CompressionType(int headerValue, String qemuName) {
        this.headerValue = headerValue;
        this.qemuName = qemuName;
    }

    /** The value of header byte 104. */
    public int headerValue() {
        return headerValue;
    }

    /** The name qemu-img prints ("zlib", "zstd"). */
    public String qemuName() {
        return qemuName;
    }

    /**
     * The type for header byte 104.
     *
     * @throws IllegalArgumentException for values other than 0 and 1, naming the value
     */
    public static CompressionType fromHeader(int value) {
        return switch (value) {
            case 0 -> DEFLATE;
            case 1 -> ZSTD;
            default -> throw new IllegalArgumentException(
                    "compression_type: " + value + " (expected: 0 (zlib) or 1 (zstd))");
        };
    }

    /** A decompressor for this type (stateless, thread-safe). */
    public ClusterCodec codec() {
        return switch (this) {
            case DEFLATE -> DeflateClusterCodec.INSTANCE;
            case ZSTD -> ZstdClusterCodec.INSTANCE;
        };
    }
}
