/**
 * On-disk persistent dirty bitmaps of qcow2 images: directory, tables, limits
 * (dirty-bitmaps.md §2-§3). Bitmap contents in memory live in the {@code bitmap} module.
 */
package dev.shear.qcow2.bitmap;
