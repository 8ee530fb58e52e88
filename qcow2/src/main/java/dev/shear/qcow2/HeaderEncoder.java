package dev.shear.qcow2;

import java.nio.BufferOverflowException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * Lays out cluster 0 from a {@link Qcow2Header} the way QEMU's qcow2_update_header does
 * (qcow2-format.md §4.1): fixed header, unknown header fields, then the extensions in QEMU's
 * order, the end marker and the backing file name right after it. Cluster 0 is meant to be
 * written in one write (§15.10).
 */
final class HeaderEncoder {
    /** Known extension types in the order QEMU writes them; unknown ones follow. */
    private static final int[] QEMU_ORDER = {HeaderExtension.BACKING_FORMAT, HeaderExtension.DATA_FILE,
        HeaderExtension.CRYPTO_HEADER, HeaderExtension.FEATURE_TABLE, HeaderExtension.BITMAPS};

    private HeaderEncoder() {
    }

    /**
     * On entry the header is self-consistent ({@link #checkEncodable}); on exit the buffer holds
     * {@code bufferSize} bytes, position 0, every byte past the backing name zero (§4.1: nothing may
     * follow it in cluster 0).
     */
    static ByteBuffer encode(Qcow2Header h, int bufferSize) {
        checkEncodable(h, bufferSize);
        ByteBuffer b = ByteBuffer.allocate(bufferSize);
        try {
            b.putInt(Qcow2Header.MAGIC).putInt(h.version())
                    .putLong(0).putInt(0) // backing file offset and size, patched below
                    .putInt(h.clusterBits()).putLong(h.size()).putInt(h.cryptMethod()).putInt(h.l1Size())
                    .putLong(h.l1TableOffset()).putLong(h.refcountTableOffset())
                    .putInt(h.refcountTableClusters()).putInt(h.nbSnapshots()).putLong(h.snapshotsOffset());
            // v2 headers stop at 72 bytes; their extensions start right there.
            if (h.version() == 3) {
                b.putLong(h.incompatibleFeatures()).putLong(h.compatibleFeatures())
                        .putLong(h.autoclearFeatures()).putInt(h.refcountOrder()).putInt(h.headerLength());
                // A 104-byte header has no compression_type byte: extensions start at 104.
                if (h.headerLength() > Qcow2Limits.V3_MIN_HEADER_LENGTH) {
                    b.put((byte) h.compressionType()).put(new byte[7]);
                    b.put(h.unknownHeaderFields());
                }
            }
            for (int type : QEMU_ORDER) {
                HeaderExtension e = h.extension(type);
                if (e != null) {
                    putExtension(b, e);
                }
            }
            // Unknown extensions keep the record's order (QEMU reverses them on every rewrite; the
            // order carries no meaning, and a stable one keeps round trips byte-exact).
            for (HeaderExtension e : h.unknownExtensions()) {
                putExtension(b, e);
            }
            b.putLong(0); // end of extensions: type 0, length 0
            String name = h.backingFileName();
            if (name != null && !name.isEmpty()) {
                byte[] bytes = name.getBytes(StandardCharsets.UTF_8);
                b.putLong(HeaderDecoder.BACKING_FILE_OFFSET, b.position());
                b.putInt(HeaderDecoder.BACKING_FILE_SIZE, bytes.length);
                b.put(bytes);
            }
        } catch (BufferOverflowException e) {
            throw new IllegalArgumentException("header: does not fit (expected: <= " + bufferSize + " bytes)", e);
        }
        return b.clear();
    }

    private static void putExtension(ByteBuffer b, HeaderExtension e) {
        byte[] data = e.data();
        b.putInt(e.type()).putInt(data.length).put(data);
        b.position(b.position() + (-data.length & 7)); // zero padding to 8; the buffer is zeroed
    }

    /** Refuses records that cannot be laid out so that decode gives them back. */
    private static void checkEncodable(Qcow2Header h, int bufferSize) {
        if (bufferSize < Qcow2Limits.V2_HEADER_LENGTH || bufferSize > h.clusterSize()) {
            throw new IllegalArgumentException("buffer size: " + bufferSize + " (expected: 72.." + h.clusterSize()
                    + ", inside cluster 0)");
        }
        int unknown = h.unknownHeaderFields().length;
        if (h.version() == 2) {
            if (h.headerLength() != Qcow2Limits.V2_HEADER_LENGTH || unknown != 0 || h.incompatibleFeatures() != 0
                    || h.compatibleFeatures() != 0 || h.autoclearFeatures() != 0 || h.refcountOrder() != 4
                    || h.compressionType() != 0) {
                throw new IllegalArgumentException("version 2 header: v3 fields set (expected: header_length 72, "
                        + "no feature bits, refcount_order 4, zlib)");
            }
        } else if (h.version() == 3) {
            boolean minimal = h.headerLength() == Qcow2Limits.V3_MIN_HEADER_LENGTH && unknown == 0
                    && h.compressionType() == 0;
            if (!minimal && h.headerLength() != Qcow2Limits.V3_HEADER_LENGTH + unknown) {
                throw new IllegalArgumentException("header_length: " + h.headerLength() + " (expected: 104, or 112 + "
                        + unknown + " bytes of unknown header fields)");
            }
        } else {
            throw new IllegalArgumentException("version: " + h.version() + " (expected: 2 or 3)");
        }
        String name = h.backingFileName();
        if (name != null && name.getBytes(StandardCharsets.UTF_8).length > Qcow2Limits.MAX_BACKING_NAME) {
            throw new IllegalArgumentException("backing file name: longer than " + Qcow2Limits.MAX_BACKING_NAME
                    + " bytes");
        }
    }

    /** The feature name table extension for {@code table} (48 bytes per entry, names NUL-padded). */
    static HeaderExtension featureTable(List<FeatureName> table) {
        ByteBuffer b = ByteBuffer.allocate(table.size() * HeaderDecoder.FEATURE_ENTRY_BYTES);
        for (FeatureName f : table) {
            byte[] name = f.name().getBytes(StandardCharsets.UTF_8);
            if (name.length > HeaderDecoder.FEATURE_NAME_BYTES) {
                throw new IllegalArgumentException("feature name: " + f.name() + " (expected: <= 46 bytes)");
            }
            int start = b.position();
            b.put((byte) f.type()).put((byte) f.bit()).put(name);
            b.position(start + HeaderDecoder.FEATURE_ENTRY_BYTES);
        }
        return new HeaderExtension(HeaderExtension.FEATURE_TABLE, b.array());
    }
}
