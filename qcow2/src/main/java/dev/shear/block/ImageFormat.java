package dev.shear.block;

import java.util.Locale;

/** The image formats Shear opens. Names as qemu-img spells them. */
public enum ImageFormat {
    RAW,
    QCOW2;

    /** The qemu-img name: "raw", "qcow2". */
    public String qemuName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** Parses a qemu-img format name; throws IllegalArgumentException naming the value otherwise. */
    public static ImageFormat parse(String name) {
        for (ImageFormat f : values()) {
            if (f.qemuName().equals(name)) {
                return f;
            }
        }
        throw new IllegalArgumentException("format: " + name + " (expected: raw or qcow2)");
    }
}
