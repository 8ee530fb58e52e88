package dev.shear.block;

import java.io.IOException;
import java.util.Locale;

/**
 * Every failure of the engine: an {@link IOException} (every operation does I/O anyway) that carries
 * a {@link BlockErrorKind}, the resource it concerns and, where it applies, the file or guest offset.
 *
 * <p>The message has the shape {@code field: value (expected: constraint) (image=NAME, offset=0xOFF)},
 * so that the user learns what was wrong, with what value, and where (style.md §3).
 */
public class BlockException extends IOException {
    private static final long serialVersionUID = 1L;

    private final BlockErrorKind kind;
    private final String resource;
    private final long offset;
    private final String detail;

    public BlockException(BlockErrorKind kind, String resource, long offset, String detail) {
        this(kind, resource, offset, detail, null);
    }

    public BlockException(BlockErrorKind kind, String resource, long offset, String detail, Throwable cause) {
        super(compose(detail, resource, offset), cause);
        this.kind = kind;
        this.resource = resource;
        this.offset = offset;
        this.detail = detail;
    }

    private static String compose(String detail, String resource, long offset) {
        StringBuilder b = new StringBuilder(detail);
        if (resource != null || offset >= 0) {
            b.append(" (");
            if (resource != null) {
                b.append("image=").append(resource);
            }
            if (offset >= 0) {
                if (resource != null) {
                    b.append(", ");
                }
                b.append("offset=0x").append(Long.toHexString(offset));
            }
            b.append(')');
        }
        return b.toString();
    }

    private static String fmt(String format, Object... args) {
        return args.length == 0 ? format : String.format(Locale.ROOT, format, args);
    }

    /** A malformed structure found at open: {@code field: value (expected: ...)}. */
    public static BlockException format(String resource, long offset, String format, Object... args) {
        return new BlockException(BlockErrorKind.INVALID_FORMAT, resource, offset, fmt(format, args));
    }

    /** Inconsistent metadata found during I/O. */
    public static BlockException corrupt(String resource, long offset, String format, Object... args) {
        return new BlockException(BlockErrorKind.CORRUPT_IMAGE, resource, offset, fmt(format, args));
    }

    public static BlockException unsupported(String resource, long offset, String format, Object... args) {
        return new BlockException(BlockErrorKind.UNSUPPORTED_FEATURE, resource, offset, fmt(format, args));
    }

    public static BlockException outOfRange(String resource, long offset, long length, long size) {
        return new BlockException(BlockErrorKind.OUT_OF_RANGE, resource, offset,
                fmt("range: offset %d length %d (expected: within size %d)", offset, length, size));
    }

    public static BlockException readOnly(String resource, String what) {
        return new BlockException(BlockErrorKind.READ_ONLY, resource, -1, what + ": device is read-only");
    }

    public static BlockException invalid(String resource, long offset, String format, Object... args) {
        return new BlockException(BlockErrorKind.INVALID_ARGUMENT, resource, offset, fmt(format, args));
    }

    public static BlockException io(String resource, long offset, String what, IOException cause) {
        if (cause instanceof BlockException b) {
            return b;
        }
        BlockErrorKind kind = isNoSpace(cause) ? BlockErrorKind.NO_SPACE : BlockErrorKind.IO;
        return new BlockException(kind, resource, offset, what + ": " + cause.getMessage(), cause);
    }

    private static boolean isNoSpace(IOException e) {
        String m = e.getMessage();
        return m != null && m.contains("No space left on device");
    }

    public BlockErrorKind kind() {
        return kind;
    }

    /** The image path or device name, or null. */
    public String resource() {
        return resource;
    }

    /** The file or guest offset the error concerns, or -1. */
    public long offset() {
        return offset;
    }

    /** The message without the resource and offset suffix. */
    public String detail() {
        return detail;
    }
}
