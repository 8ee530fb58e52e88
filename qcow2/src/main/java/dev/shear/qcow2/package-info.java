/** The qcow2 engine (qcow2-format.md). */
package dev.shear.qcow2;
