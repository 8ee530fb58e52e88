package dev.shear.systest.images;

import dev.shear.systest.tools.Corruptor;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import dev.shear.systest.tools.Qcow2HeaderFields;
import java.nio.file.Path;
import java.util.List;

/**
 * Ways to damage a qcow2 image for check tests, each applied with {@link Corruptor} at offsets computed
 * from the image's own tables, with the verdict {@code qemu-img check} gives (observed with 7.2; the
 * harness test asserts it so that a wrong offset cannot go unnoticed).
 *
 * <p>The victim ({@link #victim}) is a 4 MiB qcow2 image whose guest clusters 0 and 1 hold data and
 * cluster 2 is unallocated, all three in the first L2 table.
 */
public enum Damage {
    /** The header cluster's refcount raised from 1 to 2: "Leaked cluster 0 refcount=2 reference=1". */
    LEAKED_CLUSTER(QemuImg.CHECK_LEAKS) {
        @Override
        public void apply(Path image) {
            Corruptor.setRefcount(image, 0, Corruptor.refcount(image, 0) + 1);
        }
    },
    /** Guest cluster 2 pointed at guest cluster 0's host cluster: "ERROR cluster N refcount=1 reference=2". */
    DOUBLY_REFERENCED_CLUSTER(QemuImg.CHECK_CORRUPTIONS) {
        @Override
        public void apply(Path image) {
            long cs = Corruptor.header(image).clusterSize();
            long host = Corruptor.hostClusterOffset(image, 0);
            Corruptor.setL2Entry(image, 2 * cs, Qcow2HeaderFields.COPIED | host);
        }
    },
    /** Guest cluster 2 mapped at 1 TiB, far past the end of the file. */
    L2_ENTRY_PAST_END_OF_FILE(QemuImg.CHECK_CORRUPTIONS) {
        @Override
        public void apply(Path image) {
            long cs = Corruptor.header(image).clusterSize();
            Corruptor.setL2Entry(image, 2 * cs, Qcow2HeaderFields.COPIED | (1L << 40));
        }
    },
    /** Guest cluster 1's host offset moved by 512 bytes: "Data cluster is not properly aligned". */
    L2_ENTRY_MISALIGNED(QemuImg.CHECK_CORRUPTIONS) {
        @Override
        public void apply(Path image) {
            long cs = Corruptor.header(image).clusterSize();
            long host = Corruptor.hostClusterOffset(image, cs);
            Corruptor.setL2Entry(image, cs, Qcow2HeaderFields.COPIED | (host + 512));
        }
    };

    private final int qemuCheckExit;

    Damage(int qemuCheckExit) {
        this.qemuCheckExit = qemuCheckExit;
    }

    /** The exit status qemu-img check gives the damaged image (2 corruptions, 3 leaks only). */
    public int qemuCheckExit() {
        return qemuCheckExit;
    }

    /** Damages {@code image} in place. */
    public abstract void apply(Path image);

    /** Makes the undamaged victim: 4 MiB, guest clusters 0 and 1 written, 2 unallocated. */
    public static Path victim(Path dir, long clusterSize, String... extraOptions) {
        Path img = dir.resolve("victim-" + clusterSize + ".qcow2");
        QemuImg qemuImg = new QemuImg();
        String[] opts = new String[extraOptions.length + 1];
        opts[0] = "cluster_size=" + clusterSize;
        System.arraycopy(extraOptions, 0, opts, 1, extraOptions.length);
        qemuImg.create(img, "qcow2", 4 * ImageMatrix.MIB, opts);
        new QemuIo().run(img, "qcow2", List.of(
                QemuIo.write(0x01, 0, clusterSize),
                QemuIo.write(0x02, clusterSize, clusterSize)));
        return img;
    }
}
