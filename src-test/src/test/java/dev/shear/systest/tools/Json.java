package dev.shear.systest.tools;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;

/** One shared Jackson mapper; parse errors name what was being parsed and show the text. */
public final class Json {
    public static final ObjectMapper MAPPER = new ObjectMapper()
            .enable(SerializationFeature.INDENT_OUTPUT)
            .enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS);

    private Json() {
    }

    /** Parses {@code text}; throws AssertionError naming {@code what} and quoting the text otherwise. */
    public static JsonNode parse(String text, String what) {
        try {
            JsonNode n = MAPPER.readTree(text);
            if (n == null || n.isMissingNode()) {
                throw new AssertionError(what + ": no JSON in output: <" + text + ">");
            }
            return n;
        } catch (JsonProcessingException e) {
            throw new AssertionError(what + ": output is not JSON (" + e.getOriginalMessage() + "): <"
                    + abbreviate(text) + ">", e);
        }
    }

    /** Pretty, key-sorted rendering for assertion messages and diffs. */
    public static String pretty(JsonNode n) {
        try {
            Object o = MAPPER.treeToValue(n, Object.class);   // sorts object keys
            return MAPPER.writeValueAsString(o);
        } catch (JsonProcessingException e) {
            return String.valueOf(n);
        }
    }

    private static String abbreviate(String s) {
        return s.length() > 2000 ? s.substring(0, 2000) + "…" : s;
    }
}
