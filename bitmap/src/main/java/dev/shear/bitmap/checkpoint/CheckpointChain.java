package dev.shear.bitmap.checkpoint;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The checkpoints of one disk image in creation order (oldest first), a forest by parent links.
 *
 * <p>Invariants, checked at construction: names unique; bitmap names unique; every parent names a
 * checkpoint that comes earlier (so there are no cycles and the order is a valid creation order).
 */
public final class CheckpointChain {
    public static final CheckpointChain EMPTY = new CheckpointChain(List.of());

    private final List<Checkpoint> checkpoints;
    private final Map<String, Checkpoint> byName = new HashMap<>();

    /** @throws IllegalArgumentException naming the first checkpoint that breaks an invariant */
    public CheckpointChain(List<Checkpoint> ordered) {
        this.checkpoints = List.copyOf(ordered);
        Set<String> bitmaps = new HashSet<>();
        for (Checkpoint c : checkpoints) {
            if (c.parent() != null && !byName.containsKey(c.parent())) {
                throw new IllegalArgumentException("checkpoint '" + c.name() + "': parent '" + c.parent()
                        + "' (expected: a checkpoint listed before it)");
            }
            if (byName.putIfAbsent(c.name(), c) != null) {
                throw new IllegalArgumentException("checkpoint '" + c.name() + "': listed twice (expected: unique "
                        + "names)");
            }
            if (!bitmaps.add(c.bitmap())) {
                throw new IllegalArgumentException("checkpoint '" + c.name() + "': bitmap '" + c.bitmap()
                        + "' already belongs to another checkpoint (expected: one bitmap per checkpoint)");
            }
        }
    }

    /** Oldest first. */
    public List<Checkpoint> list() {
        return checkpoints;
    }

    public boolean isEmpty() {
        return checkpoints.isEmpty();
    }

    /** The checkpoint named {@code name}, or null. */
    public Checkpoint find(String name) {
        return byName.get(name);
    }

    /** The newest checkpoint (the parent of the next one), or null. */
    public Checkpoint newest() {
        return checkpoints.isEmpty() ? null : checkpoints.get(checkpoints.size() - 1);
    }

    /** This chain plus {@code c} at the end. */
    public CheckpointChain plus(Checkpoint c) {
        List<Checkpoint> l = new ArrayList<>(checkpoints);
        l.add(c);
        return new CheckpointChain(l);
    }

    /** This chain without {@code name}; its children take its parent. */
    public CheckpointChain minus(String name) {
        Checkpoint gone = byName.get(name);
        List<Checkpoint> l = new ArrayList<>();
        for (Checkpoint c : checkpoints) {
            if (c == gone) {
                continue;
            }
            l.add(name.equals(c.parent()) ? c.withParent(gone.parent()) : c);
        }
        return new CheckpointChain(l);
    }

    /** {@code name} and every later checkpoint descending from it, in order. */
    public List<Checkpoint> sinceInclusive(String name) {
        List<Checkpoint> out = new ArrayList<>();
        Set<String> line = new HashSet<>();
        for (Checkpoint c : checkpoints) {
            if (c.name().equals(name) || (c.parent() != null && line.contains(c.parent()))) {
                out.add(c);
                line.add(c.name());
            }
        }
        return out;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof CheckpointChain other && other.checkpoints.equals(checkpoints);
    }

    @Override
    public int hashCode() {
        return checkpoints.hashCode();
    }

    @Override
    public String toString() {
        return "CheckpointChain" + checkpoints;
    }
}
