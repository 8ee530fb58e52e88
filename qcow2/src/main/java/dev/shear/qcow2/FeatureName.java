package dev.shear.qcow2;

import java.util.Objects;

/**
 * One entry of the feature name table extension (qcow2-format.md §4.2): a human-readable name for a
 * feature bit, used in messages about unsupported features.
 *
 * @param type 0 incompatible, 1 compatible, 2 autoclear (other values are kept as read)
 * @param bit  bit number 0..63 (kept as read; the table is informational)
 * @param name the name, at most 46 bytes, trailing NULs removed
 */
public record FeatureName(int type, int bit, String name) {
    /** Feature type of incompatible bits. */
    public static final int INCOMPATIBLE = 0;
    /** Feature type of compatible bits. */
    public static final int COMPATIBLE = 1;
    /** Feature type of autoclear bits. */
    public static final int AUTOCLEAR = 2;

    public FeatureName {
        Objects.requireNonNull(name, "name");
    }
}
