package dev.shear.cli;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Prints QAPI-shaped values exactly as qemu-img 7.2 does, so that {@code shear info} and {@code shear map}
 * output can be compared byte for byte with qemu-img's.
 *
 * <p>Values are {@code Map<String, Object>} (a QDict; insertion order = QAPI field order), {@code List},
 * {@code String}, {@code Long}/{@code Integer} and {@code Boolean}.
 *
 * <ul>
 *   <li>Key order: QEMU's QDict is a 512-bucket hash table iterated bucket by bucket
 *       (qobject/qdict.c {@code tdb_hash}), each bucket newest-first; {@link #keyOrder} reproduces it.</li>
 *   <li>JSON: {@code qobject_to_json_pretty} (qobject/qjson.c): 4-space indentation, {@code "key": value},
 *       empty containers still broken over two lines, non-ASCII and control characters as
 *       {@code \\uXXXX}.</li>
 *   <li>Human: {@code dump_qobject} (block/qapi.c): {@code key: value}, dashes in keys shown as spaces,
 *       list items as {@code [i]:}.</li>
 * </ul>
 */
final class QemuOutput {
    /** QDICT_BUCKET_MAX. */
    private static final int BUCKETS = 512;

    private QemuOutput() {
    }

    /** qdict.c tdb_hash, reduced to a bucket index. */
    static int bucket(String key) {
        byte[] b = key.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        int value = 0x238F13AF * b.length;
        for (int i = 0; i < b.length; i++) {
            value += (b[i] & 0xff) << (i * 5 % 24);
        }
        long h = Integer.toUnsignedLong(1103515243 * value + 12345);
        return (int) (h % BUCKETS);
    }

    /** The keys of {@code dict} in the order QEMU iterates them. */
    static List<String> keyOrder(Map<String, ?> dict) {
        List<String> keys = new ArrayList<>(dict.keySet());
        List<String> out = new ArrayList<>(keys.size());
        for (int bucket = 0; bucket < BUCKETS && out.size() < keys.size(); bucket++) {
            // Same bucket: inserted at the head, so the newest comes first.
            for (int i = keys.size() - 1; i >= 0; i--) {
                if (bucket(keys.get(i)) == bucket) {
                    out.add(keys.get(i));
                }
            }
        }
        return out;
    }

    /** qobject_to_json_pretty, without the final newline. */
    static String json(Object value) {
        StringBuilder b = new StringBuilder();
        toJson(value, b, 0);
        return b.toString();
    }

    private static void newline(StringBuilder b, int indent) {
        b.append('\n');
        b.append(" ".repeat(indent * 4));
    }

    @SuppressWarnings("unchecked")
    private static void toJson(Object v, StringBuilder b, int indent) {
        if (v instanceof Map<?, ?> m) {
            Map<String, Object> map = (Map<String, Object>) m;
            b.append('{');
            String sep = "";
            for (String k : keyOrder(map)) {
                b.append(sep);
                newline(b, indent + 1);
                string(k, b);
                b.append(": ");
                toJson(map.get(k), b, indent + 1);
                sep = ",";
            }
            newline(b, indent);
            b.append('}');
        } else if (v instanceof List<?> list) {
            b.append('[');
            String sep = "";
            for (Object o : list) {
                b.append(sep);
                newline(b, indent + 1);
                toJson(o, b, indent + 1);
                sep = ",";
            }
            newline(b, indent);
            b.append(']');
        } else if (v instanceof String s) {
            string(s, b);
        } else if (v instanceof Boolean || v instanceof Long || v instanceof Integer) {
            b.append(v);
        } else {
            throw new IllegalArgumentException("not a QAPI value: " + v);
        }
    }

    /** A JSON string as QEMU's qjson writes it (with its quotes). */
    static String quote(String s) {
        StringBuilder b = new StringBuilder();
        string(s, b);
        return b.toString();
    }

    /** qjson.c to_json_str. */
    private static void string(String s, StringBuilder b) {
        b.append('"');
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            i += Character.charCount(cp);
            switch (cp) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\b' -> b.append("\\b");
                case '\f' -> b.append("\\f");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (cp > 0xFFFF) {
                        b.append(String.format("\\u%04X\\u%04X", 0xD800 + ((cp - 0x10000) >> 10),
                                0xDC00 + ((cp - 0x10000) & 0x3FF)));
                    } else if (cp < 0x20 || cp >= 0x7F) {
                        b.append(String.format("\\u%04X", cp));
                    } else {
                        b.append((char) cp);
                    }
                }
            }
        }
        b.append('"');
    }

    /** block/qapi.c dump_qobject at {@code indent}, appending lines to {@code b}. */
    @SuppressWarnings("unchecked")
    static void human(Object v, int indent, StringBuilder b) {
        if (v instanceof Map<?, ?> m) {
            Map<String, Object> map = (Map<String, Object>) m;
            for (String k : keyOrder(map)) {
                Object value = map.get(k);
                boolean composite = value instanceof Map || value instanceof List;
                b.append(" ".repeat(indent * 4)).append(k.replace('-', ' ')).append(':');
                b.append(composite ? "\n" : " ");
                human(value, indent + 1, b);
            }
        } else if (v instanceof List<?> list) {
            int i = 0;
            for (Object o : list) {
                boolean composite = o instanceof Map || o instanceof List;
                b.append(" ".repeat(indent * 4)).append('[').append(i++).append("]:").append(composite ? '\n' : ' ');
                human(o, indent + 1, b);
            }
        } else {
            b.append(v).append('\n');
        }
    }

    /** util/cutils.c size_to_str: "%0.3g %sB" with binary suffixes, switching up at 1000. */
    static String sizeToStr(long value) {
        String[] suffixes = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
        double scaled = value / (1000.0 / 1024.0);
        int exp = scaled == 0 ? 0 : Math.getExponent(scaled) + 1;   // frexp's exponent
        int i = (exp - 1) / 10;                                    // C division truncates toward zero
        if (i < 0) {
            i = 0;
        }
        double d = (double) value / (1L << (i * 10));
        return g3(d) + " " + suffixes[i] + "B";
    }

    /** C's "%0.3g" for values in [0, 1000). */
    static String g3(double d) {
        if (d == 0) {
            return "0";
        }
        BigDecimal r = new BigDecimal(d).round(new MathContext(3, RoundingMode.HALF_EVEN)).stripTrailingZeros();
        return r.scale() < 0 ? r.setScale(0).toPlainString() : r.toPlainString();
    }

    /** C's "%#-16" PRIx64: "0" for zero, else 0x-prefixed hex, left-justified in 16 columns. */
    static String hex16(long v) {
        String s = v == 0 ? "0" : "0x" + Long.toHexString(v);
        return s.length() >= 16 ? s : s + " ".repeat(16 - s.length());
    }
}
