/**
 * In-memory dirty bitmaps on RoaringBitmap, their loading from and storing to qcow2, dirty tracking
 * and checkpoint chains (design.md §Checkpoints and incremental backup; dirty-bitmaps.md).
 */
package dev.shear.bitmap;
