package dev.shear.fleece;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class CopyStateTest {

    @Test
    void statesShouldBeIndependentAcrossAndWithinWords() {
        CopyState s = CopyState.none(37);
        assertEquals(37, s.count(CopyState.NOT_COVERED));
        s.set(0, CopyState.NEEDED);
        s.set(15, CopyState.COPIED);
        s.set(16, CopyState.ABANDONED);
        s.set(36, CopyState.RELEASED);
        assertEquals(CopyState.NEEDED, s.get(0));
        assertEquals(CopyState.COPIED, s.get(15));
        assertEquals(CopyState.ABANDONED, s.get(16));
        assertEquals(CopyState.NOT_COVERED, s.get(17));
        assertEquals(CopyState.RELEASED, s.get(36));
        assertTrue(s.any(14, 20, CopyState.COPIED));
        assertFalse(s.any(17, 35, CopyState.NEEDED));
        assertEquals(17, CopyState.full(40).runEnd(0, 17, CopyState.NEEDED));
        assertEquals(17, s.runEnd(16, 36, CopyState.ABANDONED));
        assertThrows(IndexOutOfBoundsException.class, () -> s.get(37));
    }

    /** Clusters sharing a word, changed from different threads (different lock stripes): no lost update. */
    @Test
    void concurrentUpdatesOfOneWordShouldNotBeLost() throws Exception {
        CopyState s = CopyState.full(16);
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < 4; t++) {
            int base = t * 4;
            Thread th = new Thread(() -> {
                for (int k = 0; k < 20_000; k++) {
                    for (int c = base; c < base + 4; c++) {
                        s.set(c, k % 2 == 0 ? CopyState.COPIED : CopyState.ZERO);
                    }
                }
            });
            threads.add(th);
            th.start();
        }
        for (Thread th : threads) {
            th.join();
        }
        assertEquals(16, s.count(CopyState.ZERO));
    }
}
