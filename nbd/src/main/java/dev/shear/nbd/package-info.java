/** The Netty NBD server (nbd-protocol.md) and the control API. */
package dev.shear.nbd;
