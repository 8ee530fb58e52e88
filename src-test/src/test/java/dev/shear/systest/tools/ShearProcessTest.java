package dev.shear.systest.tools;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The fat-jar launcher. The jar comes from {@code package}, not {@code test}, so these are skipped
 * (reported, never passed) when it has not been built: {@code mvn -o -q -pl nbd -am package -DskipTests}.
 */
class ShearProcessTest {

    @BeforeEach
    void needJar() {
        assumeTrue(ShearProcess.jarAvailable(), "no shear.jar at " + System.getProperty(ShearProcess.JAR_PROPERTY)
                + " (build it with 'mvn -o -q -pl nbd -am package -DskipTests')");
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void firstStdoutLineShouldBeTheReadyLine() {
        ShearProcess p = ShearProcess.start(List.of("--version"));
        try (p) {
            assertTrue(p.uri().startsWith("shear "), p.uri());
        }
        assertFalse(p.isAlive());
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void processThatExitsWithoutReadyLineShouldFailWithItsStderr() {
        ToolException e = assertThrows(ToolException.class,
                () -> ShearProcess.start(List.of("--no-such-option")).close());
        assertTrue(e.getMessage().contains("exited before printing ready line"), e.getMessage());
        assertTrue(e.getMessage().contains("shear: Unknown option"), e.getMessage());
    }
}
