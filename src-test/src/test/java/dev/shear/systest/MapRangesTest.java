package dev.shear.systest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.tools.Json;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The map normalization the map differential test relies on. */
class MapRangesTest {
    private static JsonNode map(String json) {
        return Json.parse(json, "test");
    }

    private static final String QEMU = "[{\"start\":0,\"length\":65536,\"depth\":0,\"present\":true,\"zero\":false,"
            + "\"data\":true,\"offset\":327680},"
            + "{\"start\":65536,\"length\":65536,\"depth\":0,\"present\":true,\"zero\":false,\"data\":true,"
            + "\"offset\":900000},"
            + "{\"start\":131072,\"length\":131072,\"depth\":0,\"present\":false,\"zero\":true,\"data\":false}]";

    @Test
    void adjacentEqualEntriesShouldMergeIgnoringOffset() {
        List<MapRanges.Range> r = MapRanges.normalize(map(QEMU), 262144, "q");
        assertEquals(List.of(new MapRanges.Range(0, 131072, 0, true, false, true),
                new MapRanges.Range(131072, 131072, 0, false, true, false)), r);
    }

    @Test
    void differentSplitsOfSameStateShouldAgree() {
        String shear = "[{\"start\":0,\"length\":131072,\"depth\":0,\"present\":true,\"zero\":false,\"data\":true},"
                + "{\"start\":131072,\"length\":4096,\"depth\":0,\"present\":false,\"zero\":true,\"data\":false},"
                + "{\"start\":135168,\"length\":126976,\"depth\":0,\"present\":false,\"zero\":true,\"data\":false}]";
        assertEquals(List.of(), MapRanges.differences(MapRanges.normalize(map(QEMU), 262144, "q"),
                MapRanges.normalize(map(shear), 262144, "s"), -1));
    }

    @Test
    void differingStateShouldNameTheRange() {
        String shear = "[{\"start\":0,\"length\":65536,\"depth\":0,\"present\":true,\"zero\":false,\"data\":true},"
                + "{\"start\":65536,\"length\":196608,\"depth\":0,\"present\":false,\"zero\":true,\"data\":false}]";
        List<String> d = MapRanges.differences(MapRanges.normalize(map(QEMU), 262144, "q"),
                MapRanges.normalize(map(shear), 262144, "s"), -1);
        assertEquals(1, d.size(), d.toString());
        assertTrue(d.get(0).startsWith("[65536, 131072)"), d.get(0));
    }

    @Test
    void gapOrShortCoverageShouldFail() {
        assertThrows(AssertionError.class, () -> MapRanges.normalize(map(QEMU), 300000, "q"));
        String gap = "[{\"start\":0,\"length\":10,\"depth\":0,\"present\":true,\"zero\":false,\"data\":true},"
                + "{\"start\":20,\"length\":10,\"depth\":0,\"present\":true,\"zero\":false,\"data\":true}]";
        assertThrows(AssertionError.class, () -> MapRanges.normalize(map(gap), 30, "q"));
    }

    @Test
    void rawLayerHoleMayBeReportedAsDataButNotTheReverse() {
        String q = "[{\"start\":0,\"length\":10,\"depth\":1,\"present\":true,\"zero\":false,\"data\":true},"
                + "{\"start\":10,\"length\":10,\"depth\":1,\"present\":true,\"zero\":true,\"data\":false}]";
        String allData = "[{\"start\":0,\"length\":20,\"depth\":1,\"present\":true,\"zero\":false,\"data\":true}]";
        String allZero = "[{\"start\":0,\"length\":20,\"depth\":1,\"present\":true,\"zero\":true,\"data\":false}]";
        var qn = MapRanges.normalize(map(q), 20, "q");
        assertEquals(List.of(), MapRanges.differences(qn, MapRanges.normalize(map(allData), 20, "s"), 1));
        assertEquals(1, MapRanges.differences(qn, MapRanges.normalize(map(allData), 20, "s"), -1).size());
        assertEquals(1, MapRanges.differences(qn, MapRanges.normalize(map(allZero), 20, "s"), 1).size());
    }

    @Test
    void filesystemHoleInsideDataClusterMayBeReportedAsPlainDataButNotTheReverse() {
        String q = "[{\"start\":0,\"length\":10,\"depth\":0,\"present\":true,\"zero\":true,\"data\":true}]";
        String data = "[{\"start\":0,\"length\":10,\"depth\":0,\"present\":true,\"zero\":false,\"data\":true}]";
        var qn = MapRanges.normalize(map(q), 10, "q");
        var sn = MapRanges.normalize(map(data), 10, "s");
        assertEquals(List.of(), MapRanges.differences(qn, sn, -1));
        // The reverse (qemu says plain data, Shear says zero) is a real difference.
        assertEquals(1, MapRanges.differences(sn, qn, -1).size());
    }
}
