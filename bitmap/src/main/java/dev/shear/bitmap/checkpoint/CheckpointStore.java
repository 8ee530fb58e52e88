package dev.shear.bitmap.checkpoint;

import dev.shear.block.BlockException;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.List;

/**
 * The checkpoint sidecar of an image: {@code IMAGE.checkpoints}, next to it (design.md §Checkpoints).
 *
 * <h2>Format (version 1), parsed strictly</h2>
 * <pre>
 * shear-checkpoints 1\n
 * NAME \t PARENT \t CREATED \t BITMAP \t DESCRIPTION \n      one line per checkpoint, oldest first
 * </pre>
 * UTF-8; exactly five tab-separated fields per line; each field percent-encoded ({@code %}, tab, CR,
 * LF and other control characters as {@code %XX} of their UTF-8 bytes, nothing else); PARENT empty
 * for the first checkpoint of a chain; CREATED an ISO-8601 instant ({@code 2026-11-23T15:52:22Z}).
 * The file ends with a newline. Anything else (unknown version, a missing or extra field, a bad
 * escape, an unknown parent, a duplicate) is refused with the line number: a damaged chain must never
 * be half-read. No line-based format needs a JSON library here, and the module stays small.
 *
 * <h2>Atomic replace</h2>
 * Write {@code IMAGE.checkpoints.tmp}, fsync it, rename it over the sidecar, fsync the directory.
 * A crash leaves the old or the new file, never a mix; a stale temporary file is overwritten.
 */
public final class CheckpointStore {
    static final String MAGIC = "shear-checkpoints 1";
    static final String SUFFIX = ".checkpoints";

    private CheckpointStore() {
    }

    /** The sidecar of {@code image}. */
    public static Path sidecar(Path image) {
        return image.resolveSibling(image.getFileName() + SUFFIX);
    }

    /** The chain of {@code image}: empty when there is no sidecar. */
    public static CheckpointChain read(Path image) throws IOException {
        Path p = sidecar(image);
        if (!Files.exists(p)) {
            return CheckpointChain.EMPTY;
        }
        return decode(Files.readAllBytes(p), p.toString());
    }

    /** Replaces the sidecar atomically; an empty chain removes it. */
    public static void write(Path image, CheckpointChain chain) throws IOException {
        Path p = sidecar(image);
        Path dir = p.toAbsolutePath().getParent();
        if (chain.isEmpty()) {
            Files.deleteIfExists(p);
            syncDirectory(dir);
            return;
        }
        Path tmp = p.resolveSibling(p.getFileName() + ".tmp");
        byte[] data = encode(chain);
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            ByteBuffer b = ByteBuffer.wrap(data);
            while (b.hasRemaining()) {
                ch.write(b);
            }
            ch.force(true);
        }
        try {
            Files.move(tmp, p, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.deleteIfExists(tmp);
            throw new IOException(p + ": atomic rename not supported here (expected: a local file system)", e);
        }
        syncDirectory(dir);
    }

    private static void syncDirectory(Path dir) throws IOException {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException e) {
            // Some file systems refuse opening a directory; the rename itself is still atomic there.
            if (!Files.isDirectory(dir)) {
                throw e;
            }
        }
    }

    static byte[] encode(CheckpointChain chain) {
        StringBuilder sb = new StringBuilder(MAGIC).append('\n');
        for (Checkpoint c : chain.list()) {
            sb.append(escape(c.name())).append('\t')
                    .append(c.parent() == null ? "" : escape(c.parent())).append('\t')
                    .append(c.created()).append('\t')
                    .append(escape(c.bitmap())).append('\t')
                    .append(escape(c.description())).append('\n');
        }
        return sb.toString().getBytes(StandardCharsets.UTF_8);
    }

    static CheckpointChain decode(byte[] data, String resource) throws BlockException {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(data)).toString();
        } catch (CharacterCodingException e) {
            throw BlockException.format(resource, -1, "not UTF-8 (expected: a checkpoint sidecar written by shear)");
        }
        if (!text.endsWith("\n")) {
            throw BlockException.format(resource, -1, "no newline at the end (expected: a complete file; truncated?)");
        }
        String[] lines = text.substring(0, text.length() - 1).split("\n", -1);
        if (!lines[0].equals(MAGIC)) {
            throw BlockException.format(resource, -1, "line 1: '%s' (expected: '%s')", abbreviate(lines[0]), MAGIC);
        }
        List<Checkpoint> out = new ArrayList<>();
        for (int i = 1; i < lines.length; i++) {
            String[] f = lines[i].split("\t", -1);
            if (f.length != 5) {
                throw BlockException.format(resource, -1, "line %d: %d fields (expected: 5, name parent created "
                        + "bitmap description, tab-separated)", i + 1, f.length);
            }
            try {
                Instant created;
                try {
                    created = Instant.parse(f[2]);
                } catch (DateTimeParseException e) {
                    throw new IllegalArgumentException("created: '" + abbreviate(f[2]) + "' (expected: an ISO-8601 "
                            + "instant such as 2026-11-23T15:52:22Z)");
                }
                out.add(new Checkpoint(unescape(f[0]), f[1].isEmpty() ? null : unescape(f[1]), created,
                        unescape(f[4]), unescape(f[3])));
            } catch (IllegalArgumentException e) {
                throw BlockException.format(resource, -1, "line %d: %s", i + 1, e.getMessage());
            }
        }
        try {
            return new CheckpointChain(out);
        } catch (IllegalArgumentException e) {
            throw BlockException.format(resource, -1, "%s", e.getMessage());
        }
    }

    static String escape(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char ch = s.charAt(i);
            if (ch == '%' || ch < 0x20 || ch == 0x7f) {
                sb.append('%').append(Character.toUpperCase(Character.forDigit(ch >> 4, 16)))
                        .append(Character.toUpperCase(Character.forDigit(ch & 15, 16)));
            } else {
                sb.append(ch);
            }
        }
        return sb.toString();
    }

    static String unescape(String s) {
        if (s.indexOf('%') < 0) {
            return s;
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (int i = 0; i < s.length(); i++) {
            char ch = s.charAt(i);
            if (ch != '%') {
                int cp = s.codePointAt(i);
                out.writeBytes(new String(Character.toChars(cp)).getBytes(StandardCharsets.UTF_8));
                i += Character.charCount(cp) - 1;
                continue;
            }
            int hi = i + 2 < s.length() ? Character.digit(s.charAt(i + 1), 16) : -1;
            int lo = i + 2 < s.length() ? Character.digit(s.charAt(i + 2), 16) : -1;
            if (hi < 0 || lo < 0) {
                throw new IllegalArgumentException("bad escape in '" + abbreviate(s) + "' (expected: %XX)");
            }
            out.write(hi << 4 | lo);
            i += 2;
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    private static String abbreviate(String s) {
        return s.length() > 60 ? s.substring(0, 60) + "..." : s;
    }
}
