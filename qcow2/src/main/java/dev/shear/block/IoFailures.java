package dev.shear.block;

import java.io.IOException;

/** Collecting the failures of several close steps into one exception, the first with the rest suppressed. */
public final class IoFailures {
    private IoFailures() {
    }

    /**
     * Adds {@code next} to the failures collected so far.
     *
     * @param failure the first failure so far, or null if none
     * @param next    a further failure
     * @return {@code next} if there was none yet, else {@code failure} with {@code next} suppressed in it
     */
    public static IOException add(IOException failure, IOException next) {
        if (failure == null) {
            return next;
        }
        failure.addSuppressed(next);
        return failure;
    }
}
