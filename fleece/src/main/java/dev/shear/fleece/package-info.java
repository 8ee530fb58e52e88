/**
 * Copy-before-write, point-in-time snapshot views, scratch targets and backup jobs
 * (design.md §The fleecing invariant).
 */
package dev.shear.fleece;
