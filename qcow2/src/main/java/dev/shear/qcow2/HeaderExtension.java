package dev.shear.qcow2;

import java.util.Arrays;
import java.util.HexFormat;

/**
 * One header extension as framed in cluster 0 (qcow2-format.md §4.1): its type and its data without
 * the padding. Unknown types are kept so that a header rewrite preserves them byte for byte.
 *
 * @param type the 32-bit extension type, e.g. {@link #BACKING_FORMAT}
 * @param data the payload (length L of the framing); copied in and out
 */
public record HeaderExtension(int type, byte[] data) {
    /** End of the extension area. */
    public static final int END = 0x00000000;
    /** Backing file format name. */
    public static final int BACKING_FORMAT = 0xe2792aca;
    /** Feature name table. */
    public static final int FEATURE_TABLE = 0x6803f857;
    /** Persistent bitmaps. */
    public static final int BITMAPS = 0x23852875;
    /** Full disk encryption header pointer. */
    public static final int CRYPTO_HEADER = 0x0537be77;
    /** External data file name. */
    public static final int DATA_FILE = 0x44415441;

    public HeaderExtension {
        data = data.clone();
    }

    /** A copy of the payload. */
    @Override
    public byte[] data() {
        return data.clone();
    }

    /** Payload length without padding. */
    public int length() {
        return data.length;
    }

    /** Bytes the extension takes in cluster 0: 8 bytes of framing plus the payload padded to 8. */
    public int encodedLength() {
        return 8 + ((data.length + 7) & ~7);
    }

    /** True for the types this package interprets; the others are preserved as opaque. */
    public boolean isKnown() {
        return isKnownType(type);
    }

    static boolean isKnownType(int type) {
        return type == BACKING_FORMAT || type == FEATURE_TABLE || type == BITMAPS
                || type == CRYPTO_HEADER || type == DATA_FILE;
    }

    /** Spec name of a type for messages, or "unknown". */
    static String typeName(int type) {
        return switch (type) {
            case BACKING_FORMAT -> "backing format";
            case FEATURE_TABLE -> "feature name table";
            case BITMAPS -> "bitmaps";
            case CRYPTO_HEADER -> "full disk encryption header pointer";
            case DATA_FILE -> "external data file name";
            case END -> "end";
            default -> "unknown";
        };
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof HeaderExtension e && e.type == type && Arrays.equals(e.data, data);
    }

    @Override
    public int hashCode() {
        return 31 * type + Arrays.hashCode(data);
    }

    @Override
    public String toString() {
        return String.format("HeaderExtension[type=0x%08x (%s), data=%s]", type, typeName(type),
                HexFormat.of().formatHex(data));
    }
}
