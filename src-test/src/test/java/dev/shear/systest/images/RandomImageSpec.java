package dev.shear.systest.images;

import java.util.List;

/**
 * One random image: every choice {@link RandomImageGenerator} made from {@code seed}, so that a failure
 * message shows the whole recipe and {@code -Dshear.seed=<masterSeed>} rebuilds it.
 *
 * @param masterSeed    the run's seed (print it; pass it back with -Dshear.seed)
 * @param index         position in the run
 * @param seed          this case's own seed, split from the master
 * @param clusterSize   bytes
 * @param compat        "0.10" or "1.1"
 * @param extendedL2    extended_l2=on
 * @param refcountBits  refcount_bits
 * @param compression   null (none), "zlib" or "zstd": a {@code qemu-img convert -c} step after the ops
 * @param size          virtual size (a multiple of 512, not always of the cluster size)
 * @param backingFormat null (no backing file), "raw" or "qcow2"
 * @param backingSize   the backing file's size (may be smaller or larger than {@code size})
 * @param backingOps    qemu-io commands on the backing file
 * @param ops           qemu-io commands on the image (before compression)
 * @param postOps       qemu-io commands on the compressed image (empty without compression)
 */
public record RandomImageSpec(long masterSeed, int index, long seed, long clusterSize, String compat,
        boolean extendedL2, int refcountBits, String compression, long size, String backingFormat,
        long backingSize, List<String> backingOps, List<String> ops, List<String> postOps) {

    /** The qemu-img -o options of the image. */
    public List<String> createOptions() {
        List<String> o = new java.util.ArrayList<>();
        o.add("cluster_size=" + clusterSize);
        o.add("compat=" + compat);
        if (extendedL2) {
            o.add("extended_l2=on");
        }
        o.add("refcount_bits=" + refcountBits);
        return o;
    }

    /** One line: how to reproduce and what was chosen. */
    public String summary() {
        return String.format("random[%d] (reproduce: -Dshear.seed=0x%x, case seed 0x%x) cluster=%d compat=%s "
                + "extended_l2=%s refcount_bits=%d compression=%s size=%d backing=%s/%d ops=%d+%d",
                index, masterSeed, seed, clusterSize, compat, extendedL2, refcountBits, compression, size,
                backingFormat, backingSize, ops.size(), postOps.size());
    }

    /** Everything, for a failure message. */
    public String recipe() {
        return summary() + "\n  options: " + createOptions()
                + (backingFormat == null ? "" : "\n  backing ops: " + backingOps)
                + "\n  ops: " + ops
                + (postOps.isEmpty() ? "" : "\n  after convert -c: " + postOps);
    }

    @Override
    public String toString() {
        return String.format("random[%d] seed=0x%x c=%d v%s%s rc=%d%s%s", index, masterSeed, clusterSize,
                compat, extendedL2 ? " el2" : "", refcountBits, compression == null ? "" : " " + compression,
                backingFormat == null ? "" : " backing=" + backingFormat);
    }
}
