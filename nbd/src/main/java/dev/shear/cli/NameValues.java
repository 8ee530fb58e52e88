package dev.shear.cli;

import java.util.List;

/**
 * Repeatable {@code NAME=VALUE} options that attach a value to one of the names given as parameters
 * ({@code --created NAME=INSTANT}, {@code --description NAME=TEXT} of {@code shear checkpoint redefine}
 * and {@code shear ctl checkpoint-redefine}).
 */
final class NameValues {
    private NameValues() {
    }

    /** The VALUE of the last {@code name=VALUE} in {@code pairs} (a later option overrides), or null. */
    static String valueOf(List<String> pairs, String name) {
        String v = null;
        for (String p : pairs) {
            if (p.startsWith(name + "=")) {
                v = p.substring(name.length() + 1);
            }
        }
        return v;
    }

    /** The first value of {@code options} that is not {@code NAME=VALUE} for one of {@code names}, or null. */
    static String firstUnknown(List<String> names, List<List<String>> options) {
        for (List<String> pairs : options) {
            for (String p : pairs) {
                int eq = p.indexOf('=');
                if (eq <= 0 || !names.contains(p.substring(0, eq))) {
                    return p;
                }
            }
        }
        return null;
    }
}
