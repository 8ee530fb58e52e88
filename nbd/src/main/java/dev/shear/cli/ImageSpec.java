package dev.shear.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.Set;

/**
 * QEMU's {@code json:{...}} pseudo-filename, as ovirt-imageio passes it to qemu-nbd
 * ({@code json:{"driver": "qcow2", "file": {"driver": "file", "filename": "/img"}}}). Only the subset
 * Shear can honour is accepted: a format driver over a plain file, nested or with dotted keys
 * ({@code "file.filename"}). Anything else (offset/size windows, {@code "backing": null}) is refused
 * by name rather than silently served differently.
 *
 * @param format the format driver ({@code raw}, {@code qcow2}), or null to probe
 * @param path   the image file
 */
record ImageSpec(String format, Path path) {
    private static final ObjectMapper MAPPER = new ObjectMapper();
    private static final Set<String> TOP_KEYS = Set.of("driver", "file", "file.driver", "file.filename");
    private static final Set<String> FILE_KEYS = Set.of("driver", "filename");

    static ImageSpec parseJson(String image) {
        JsonNode root;
        try {
            root = MAPPER.readTree(image.substring("json:".length()));
        } catch (IOException e) {
            throw new IllegalArgumentException("IMAGE " + image + ": not valid JSON (" + e.getMessage() + ")");
        }
        if (root == null || !root.isObject()) {
            throw new IllegalArgumentException("IMAGE " + image + " (expected: json:{...})");
        }
        checkKeys(root, TOP_KEYS, image);
        String format = text(root.get("driver"));
        String fileDriver = text(root.get("file.driver"));
        String filename = text(root.get("file.filename"));
        JsonNode file = root.get("file");
        if (file != null) {
            if (file.isTextual()) {
                filename = file.asText();
            } else if (file.isObject()) {
                checkKeys(file, FILE_KEYS, image);
                fileDriver = text(file.get("driver"));
                filename = text(file.get("filename"));
            } else {
                throw new IllegalArgumentException("IMAGE " + image + " file: " + file
                        + " (expected: an object or a filename)");
            }
        }
        if (fileDriver != null && !fileDriver.equals("file")) {
            throw new IllegalArgumentException("IMAGE " + image + " file.driver: " + fileDriver
                    + " (expected: file)");
        }
        if (filename == null) {
            throw new IllegalArgumentException("IMAGE " + image + ": file.filename missing");
        }
        return new ImageSpec(format, Path.of(filename));
    }

    private static void checkKeys(JsonNode node, Set<String> allowed, String image) {
        for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
            String k = it.next();
            if (!allowed.contains(k)) {
                throw new IllegalArgumentException("IMAGE " + image + " " + k
                        + ": not supported by shear (expected: one of " + String.join(", ", allowed) + ")");
            }
        }
    }

    private static String text(JsonNode n) {
        return n == null || n.isNull() ? null : n.asText();
    }
}
