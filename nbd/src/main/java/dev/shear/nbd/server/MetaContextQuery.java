package dev.shear.nbd.server;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * Resolves LIST_META_CONTEXT and SET_META_CONTEXT queries against an export (nbd-protocol.md §2.10).
 *
 * <pre>
 * query                    LIST returns                  SET selects
 * (no queries)             every context                 nothing
 * base:                    base:allocation               nothing
 * base:allocation          base:allocation               base:allocation
 * qemu:                    every qemu: context           nothing
 * qemu:dirty-bitmap:       every exported bitmap         nothing
 * qemu:dirty-bitmap:NAME   that bitmap if exported       that bitmap if exported
 * qemu:allocation-depth    that context if enabled       that context if enabled
 * anything else            nothing                       nothing
 * </pre>
 * Only contexts that match a query are ever returned (oVirt treats anything else as an error).
 */
public final class MetaContextQuery {
    private MetaContextQuery() {
    }

    /** The contexts a LIST answers, without duplicates, in id order. */
    public static List<MetaContext> list(Export export, List<String> queries) {
        List<MetaContext> all = export.contexts();
        if (queries.isEmpty()) {
            return all;
        }
        return resolve(all, queries, true);
    }

    /** The contexts a SET selects, without duplicates, in id order. */
    public static List<MetaContext> set(Export export, List<String> queries) {
        return resolve(export.contexts(), queries, false);
    }

    private static List<MetaContext> resolve(List<MetaContext> all, List<String> queries, boolean list) {
        Set<MetaContext> matched = new LinkedHashSet<>();
        for (String q : queries) {
            for (MetaContext c : all) {
                if (matches(c, q, list)) {
                    matched.add(c);
                }
            }
        }
        List<MetaContext> ordered = new ArrayList<>();
        for (MetaContext c : all) {
            if (matched.contains(c)) {
                ordered.add(c);
            }
        }
        return ordered;
    }

    private static boolean matches(MetaContext c, String query, boolean list) {
        if (query.equals(c.name())) {
            return true;
        }
        if (!list) {
            return false;   // wildcards select nothing (an empty leaf is a wildcard for LIST only)
        }
        return switch (query) {
            case "base:" -> c instanceof MetaContext.BaseAllocation;
            case "qemu:" -> !(c instanceof MetaContext.BaseAllocation);
            case MetaContext.DIRTY_BITMAP_PREFIX -> c instanceof MetaContext.DirtyBitmapContext;
            default -> false;
        };
    }
}
