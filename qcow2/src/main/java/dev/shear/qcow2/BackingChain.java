package dev.shear.qcow2;

import dev.shear.block.BlockDevice;
import dev.shear.block.BlockErrorKind;
import dev.shear.block.BlockException;
import dev.shear.block.ImageFile;
import dev.shear.block.ImageFormat;
import dev.shear.block.ImageProbe;
import dev.shear.block.RawImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;

/**
 * Opens the backing file of a qcow2 image (qcow2-format.md §9).
 *
 * <ul>
 *   <li>A relative backing name is resolved against the directory of the image that names it, never
 *       the current directory (§15 pitfall 14); the displayed name is QEMU's {@code path_combine} of
 *       the overlay's path as given and the backing name.</li>
 *   <li>The format comes from the backing-format extension. Without it the file is probed by magic,
 *       as QEMU 7.2 still does for reading (it refuses only to <em>create</em> such overlays): a raw
 *       backing file that happens to start with the qcow2 magic would be misread, which is why
 *       writable opens must never rely on probing.</li>
 *   <li>Backing files are always opened read-only; raw and qcow2 are supported.</li>
 *   <li>The chain is bounded ({@link Qcow2OpenOptions#maxChainDepth()}) and loops are refused by real
 *       path (symlinks and {@code ..} resolved); both errors name the file at fault.</li>
 * </ul>
 */
final class BackingChain {

    /** What an image below the top needs to know about the chain above it. */
    static final class Context {
        final int depth;              // 0 for the image the user opened
        final Set<Path> realPaths;    // real paths of the images above, including this one

        Context(int depth, Set<Path> realPaths) {
            this.depth = depth;
            this.realPaths = realPaths;
        }

        static Context top(ImageFile file) {
            Set<Path> seen = new HashSet<>();
            Path real = realPath(file.path());
            if (real != null) {
                seen.add(real);
            }
            return new Context(0, seen);
        }
    }

    private BackingChain() {
    }

    /** The path QEMU shows for a backing file: the overlay's directory (as given) joined with the name. */
    static Path resolve(Path overlay, String backingName) throws BlockException {
        try {
            Path name = Path.of(backingName);
            if (name.isAbsolute()) {
                return name;
            }
            Path dir = overlay.getParent();
            return dir == null ? name : dir.resolve(name);
        } catch (InvalidPathException e) {
            throw BlockException.format(overlay.toString(), -1, "backing file name: %s (expected: a valid path)",
                    backingName);
        }
    }

    /**
     * Opens the backing file named by {@code header} below the image {@code overlay}.
     *
     * @param ctx the chain context of the overlay
     * @return the backing device (owned by the caller, who closes it), never null
     */
    static BlockDevice open(ImageFile overlay, Qcow2Header header, Qcow2OpenOptions options, Context ctx)
            throws IOException {
        String overlayName = overlay.path().toString();
        Path path = resolve(overlay.path(), header.backingFileName());
        if (ctx.depth + 1 > options.maxChainDepth()) {
            throw BlockException.unsupported(overlayName, -1,
                    "backing chain depth: %d at %s (expected: <= %d)", ctx.depth + 1, path,
                    options.maxChainDepth());
        }
        if (!Files.exists(path)) {
            throw new BlockException(BlockErrorKind.IO, overlayName, -1,
                    "backing file: " + path + ": not found");
        }
        Path real = realPath(path);
        if (real != null && ctx.realPaths.contains(real)) {
            throw BlockException.format(overlayName, -1,
                    "backing file: %s (expected: not already in the chain; it loops back to %s)", path, real);
        }
        ImageFile file = ImageFile.open(path, false);
        try {
            ImageFormat format = format(header.backingFormat(), file, overlayName);
            if (format == ImageFormat.RAW) {
                return new RawImage(file);
            }
            Set<Path> seen = new HashSet<>(ctx.realPaths);
            if (real != null) {
                seen.add(real);
            }
            return Qcow2Image.open(file, new Qcow2OpenOptions(true, null, options.maxChainDepth(),
                    options.cacheBytes(), null), new Context(ctx.depth + 1, seen));
        } catch (IOException | RuntimeException e) {
            file.close();
            throw e;
        }
    }

    private static ImageFormat format(String recorded, ImageFile file, String overlayName) throws IOException {
        if (recorded == null) {
            return ImageProbe.probe(file);
        }
        return switch (recorded) {
            case "raw" -> ImageFormat.RAW;
            case "qcow2" -> ImageFormat.QCOW2;
            default -> throw BlockException.unsupported(overlayName, -1,
                    "backing file format: %s (expected: raw or qcow2)", recorded);
        };
    }

    static Path realPath(Path p) {
        try {
            return p.toRealPath();
        } catch (IOException e) {
            return null;
        }
    }
}
