package dev.shear.systest.tools;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Inherited;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * The external tools a test class or method needs, by the name looked up on PATH ({@code "qemu-img"},
 * {@code "nbdinfo"}…), or {@value ToolRequirement#PYTHON_LIBNBD} for a python3 that can
 * {@code import nbd}.
 *
 * <p>A missing tool fails the test when the environment says tools are mandatory ({@code CI=true} or
 * {@code SHEAR_REQUIRE_TOOLS=true}) and skips it otherwise: never a silent pass. See
 * {@link ToolRequirement}.
 */
@Documented
@Inherited
@Retention(RetentionPolicy.RUNTIME)
@Target({ElementType.TYPE, ElementType.METHOD, ElementType.ANNOTATION_TYPE})
@ExtendWith(ToolRequirement.class)
public @interface RequiresTools {
    String[] value();
}
