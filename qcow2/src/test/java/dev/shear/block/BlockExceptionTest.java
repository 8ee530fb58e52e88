package dev.shear.block;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import org.junit.jupiter.api.Test;

class BlockExceptionTest {

    @Test
    void messageShouldNameFieldImageAndOffset() {
        BlockException e = BlockException.format("vm.qcow2", 0x24, "l1_size: %d (expected: <= %d)", 33554433, 33554432);
        assertEquals("l1_size: 33554433 (expected: <= 33554432) (image=vm.qcow2, offset=0x24)", e.getMessage());
        assertEquals(BlockErrorKind.INVALID_FORMAT, e.kind());
    }

    @Test
    void noSpaceShouldBeClassifiedAsNoSpace() {
        BlockException e = BlockException.io("a", 0, "write", new IOException("No space left on device"));
        assertEquals(BlockErrorKind.NO_SPACE, e.kind());
    }
}
