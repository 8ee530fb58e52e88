package dev.shear.systest;

import dev.shear.systest.images.ImageCase;
import dev.shear.systest.images.ImageMatrix;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;

/**
 * Shared setup of the differential tests over the {@link ImageMatrix}: the matrix is built once per
 * test class, in that class's {@link TempDir}, and served by {@link #matrix()} (usable as
 * {@code @MethodSource("matrix")}). The state is static and reassigned by each subclass's
 * {@code @BeforeAll}, so subclasses must not run concurrently (the suite does not run classes in
 * parallel).
 */
abstract class ImageMatrixTest {
    @TempDir
    static Path matrixDir;

    private static List<ImageCase> matrix;

    @BeforeAll
    static void buildMatrix() {
        matrix = ImageMatrix.build(matrixDir);
    }

    /** The matrix cases of the running test class. */
    static Stream<ImageCase> matrix() {
        return matrix.stream();
    }
}
