/**
 * Scratch targets of copy-before-write: where the old contents of clusters live while a snapshot does
 * ({@link dev.shear.fleece.scratch.ScratchTarget}; design notes in
 * {@link dev.shear.fleece.scratch.SpillStore}).
 */
package dev.shear.fleece.scratch;
