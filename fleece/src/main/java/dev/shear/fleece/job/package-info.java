/**
 * Backup jobs over copy-before-write snapshots (design.md §Control API, §Checkpoints): pull backups
 * (a snapshot export a client reads) and push backups (Shear writes a qcow2 backup image), their
 * states, progress and events, and the {@link dev.shear.fleece.job.CheckpointProvider} they use to
 * start from a checkpoint and create the next one at the snapshot point.
 */
package dev.shear.fleece.job;
