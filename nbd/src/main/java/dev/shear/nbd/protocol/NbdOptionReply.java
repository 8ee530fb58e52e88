package dev.shear.nbd.protocol;

/**
 * Every server-to-client message of the handshake (nbd-protocol.md §2.1, §2.4, §2.6, §2.8, §2.10),
 * encoded by {@link NbdOptionReplyEncoder}. All are immutable values without buffers.
 */
public sealed interface NbdOptionReply {

    /** The 18-byte greeting: NBDMAGIC, IHAVEOPT, handshake flags (§2.1). */
    record Greeting(int handshakeFlags) implements NbdOptionReply {
    }

    /** The raw reply to NBD_OPT_EXPORT_NAME: size, flags and 124 zeroes unless NO_ZEROES (§2.6). */
    record ExportNameReply(long size, int transmissionFlags, boolean noZeroes) implements NbdOptionReply {
    }

    /** NBD_REP_ACK: the final reply of a successful option. */
    record Ack(int option) implements NbdOptionReply {
    }

    /** NBD_REP_SERVER: one export of a LIST, with its description after the name (QEMU's way). */
    record Server(int option, String name, String description) implements NbdOptionReply {
    }

    /** NBD_REP_INFO / NBD_INFO_EXPORT: 12 bytes with the type. */
    record InfoExport(int option, long size, int transmissionFlags) implements NbdOptionReply {
    }

    /** NBD_REP_INFO / NBD_INFO_NAME. */
    record InfoName(int option, String name) implements NbdOptionReply {
    }

    /** NBD_REP_INFO / NBD_INFO_DESCRIPTION. */
    record InfoDescription(int option, String description) implements NbdOptionReply {
    }

    /** NBD_REP_INFO / NBD_INFO_BLOCK_SIZE: 14 bytes with the type. */
    record InfoBlockSize(int option, int minimum, int preferred, int maximum) implements NbdOptionReply {
    }

    /** NBD_REP_META_CONTEXT: a context id (0 for LIST) and its name. */
    record MetaContextReply(int option, int contextId, String name) implements NbdOptionReply {
    }

    /** An NBD_REP_ERR_* reply with a human-readable message (QEMU always sends one). */
    record Error(int option, int type, String message) implements NbdOptionReply {
        public Error {
            if ((type & NbdConstants.NBD_REP_FLAG_ERROR) == 0) {
                throw new IllegalArgumentException("error reply type: 0x" + Integer.toHexString(type)
                        + " (expected: bit 31 set)");
            }
        }
    }
}
