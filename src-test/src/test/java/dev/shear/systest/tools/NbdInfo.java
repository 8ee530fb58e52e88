package dev.shear.systest.tools;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.List;

/** Typed wrapper of {@code nbdinfo} (libnbd). */
public final class NbdInfo {
    private final Tool tool;

    public NbdInfo() {
        this(Tool.named("nbdinfo"));
    }

    public NbdInfo(Tool tool) {
        this.tool = tool;
    }

    /** {@code nbdinfo --json URI}. */
    public JsonNode json(String uri) {
        return Json.parse(tool.check("--json", uri).stdout(), "nbdinfo --json " + uri);
    }

    /** {@code nbdinfo --size URI}. */
    public long size(String uri) {
        return Long.parseLong(tool.check("--size", uri).stdout().strip());
    }

    /** {@code nbdinfo --map URI}: base:allocation, one extent per line as nbdinfo prints it. */
    public List<String> map(String uri) {
        return tool.check("--map", uri).stdout().lines().toList();
    }

    /** {@code nbdinfo --map=CONTEXT URI}, e.g. {@code qemu:dirty-bitmap:b1} or {@code qemu:allocation-depth}. */
    public List<String> map(String uri, String context) {
        return tool.check("--map=" + context, uri).stdout().lines().toList();
    }

    /** {@code nbdinfo --map=CONTEXT --json URI}. */
    public JsonNode mapJson(String uri, String context) {
        return Json.parse(tool.check("--map=" + context, "--json", uri).stdout(), "nbdinfo --map --json " + uri);
    }

    /** {@code nbdinfo --list --json URI}. */
    public JsonNode listJson(String uri) {
        return Json.parse(tool.check("--list", "--json", uri).stdout(), "nbdinfo --list --json " + uri);
    }
}
