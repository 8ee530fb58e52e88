/**
 * The device SPI of the block graph ({@link dev.shear.block.BlockDevice}, extents, errors), positional
 * file I/O and raw images (design.md §The block graph).
 */
package dev.shear.block;
