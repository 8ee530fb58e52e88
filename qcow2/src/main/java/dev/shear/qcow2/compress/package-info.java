/** qcow2 cluster compression: deflate and zstd codecs (qcow2-format.md §7). */
package dev.shear.qcow2.compress;
