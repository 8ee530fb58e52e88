/**
 * The control API (design.md §Control API): HTTP/1.1 with JSON bodies on a Unix socket, serving
 * exports, bitmaps, checkpoints, backup jobs, job events and metrics of a running server.
 */
package dev.shear.nbd.control;
