/**
 * The NBD wire codec (shared/docs/nbd-protocol.md): constants, decoded options and requests, reply
 * messages and their encoders. Pure protocol, no server logic.
 */
package dev.shear.nbd.protocol;
