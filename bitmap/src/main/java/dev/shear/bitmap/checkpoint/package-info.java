/**
 * Checkpoints: named points in time, one persistent bitmap each, chained by parent links and kept in
 * a sidecar file next to the image (design.md §Checkpoints and incremental backup; dirty-bitmaps.md §7).
 */
package dev.shear.bitmap.checkpoint;
