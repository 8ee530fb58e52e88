/**
 * The qcow2 engine (qcow2-format.md).
 *
 * <p>On-disk structure decoders, all pure over {@link java.nio.ByteBuffer} or
 * {@link dev.shear.block.ImageFile} and bounded by {@code Qcow2Limits} before they allocate:
 * {@link dev.shear.qcow2.Qcow2Header} (cluster 0, with {@code HeaderDecoder}/{@code HeaderEncoder}),
 * {@code L1Entry}/{@code L2Entry} (entry bits, {@code ClusterType}, {@code SubclusterType}),
 * {@code Refcounts}/{@code RefcountTable}, {@code SnapshotTable} with
 * {@link dev.shear.qcow2.Qcow2Snapshot}, and {@link dev.shear.qcow2.ClusterMapping}, the closed set of
 * answers a lookup gives the read path. Persistent bitmap structures are in
 * {@code dev.shear.qcow2.bitmap}.
 *
 * <p>Error contract: a malformed structure is a {@link dev.shear.block.BlockException} of kind
 * INVALID_FORMAT (at open) whose message reads {@code field: value (expected: constraint)} with the
 * image and the file offset of the field; a feature Shear lacks is UNSUPPORTED_FEATURE. Encoders
 * throw {@link java.lang.IllegalArgumentException}: their input comes from our own code.
 */
package dev.shear.qcow2;
