/**
 * The NBD server (shared/docs/nbd-protocol.md, design.md): handshake, transmission, exports, meta
 * contexts, request validation and the device-error mapping, on Netty.
 */
package dev.shear.nbd.server;
