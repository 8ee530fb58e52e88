package dev.shear.nbd.control;

/** A control request that fails with an HTTP status and {@code {"error": ..., "field": ...}}. */
public final class ControlException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int status;
    private final String field;

    public ControlException(int status, String message, String field) {
        super(message);
        this.status = status;
        this.field = field;
    }

    public static ControlException badRequest(String message, String field) {
        return new ControlException(400, message, field);
    }

    public static ControlException notFound(String message) {
        return new ControlException(404, message, null);
    }

    public static ControlException conflict(String message, String field) {
        return new ControlException(409, message, field);
    }

    public int status() {
        return status;
    }

    /** The request field at fault, or null. */
    public String field() {
        return field;
    }
}
