package dev.shear.nbd.protocol;

import java.util.List;

/**
 * One decoded handshake message from the client (nbd-protocol.md §2.2-§2.11): the client flags once,
 * then option requests. Malformed option data is not an exception: it decodes to {@link Invalid},
 * which the handshake answers with NBD_REP_ERR_INVALID (option-scoped, style.md §3).
 */
public sealed interface NbdOption {

    /** The option number this message answers to (0 for {@link ClientFlags}). */
    int code();

    /** The 32-bit client flags sent right after the greeting (§2.2). */
    record ClientFlags(int flags) implements NbdOption {
        @Override
        public int code() {
            return 0;
        }
    }

    /** NBD_OPT_EXPORT_NAME: the whole option data is the name (§2.6). */
    record ExportName(String name) implements NbdOption {
        @Override
        public int code() {
            return NbdConstants.NBD_OPT_EXPORT_NAME;
        }
    }

    /** NBD_OPT_ABORT; any data is ignored (§2.7). */
    record Abort() implements NbdOption {
        @Override
        public int code() {
            return NbdConstants.NBD_OPT_ABORT;
        }
    }

    /** NBD_OPT_LIST with empty data (§2.7). */
    record ListExports() implements NbdOption {
        @Override
        public int code() {
            return NbdConstants.NBD_OPT_LIST;
        }
    }

    /** NBD_OPT_STARTTLS with empty data (§2.7). */
    record StartTls() implements NbdOption {
        @Override
        public int code() {
            return NbdConstants.NBD_OPT_STARTTLS;
        }
    }

    /**
     * NBD_OPT_INFO ({@code go == false}) or NBD_OPT_GO (§2.8).
     *
     * @param infoRequests the NBD_INFO_* types asked for, in wire order
     */
    record Info(boolean go, String exportName, int[] infoRequests) implements NbdOption {
        @Override
        public int code() {
            return go ? NbdConstants.NBD_OPT_GO : NbdConstants.NBD_OPT_INFO;
        }

        public boolean requested(int infoType) {
            for (int t : infoRequests) {
                if (t == infoType) {
                    return true;
                }
            }
            return false;
        }
    }

    /** NBD_OPT_STRUCTURED_REPLY with empty data (§2.9). */
    record StructuredReply() implements NbdOption {
        @Override
        public int code() {
            return NbdConstants.NBD_OPT_STRUCTURED_REPLY;
        }
    }

    /** NBD_OPT_LIST_META_CONTEXT ({@code set == false}) or NBD_OPT_SET_META_CONTEXT (§2.10). */
    record MetaContext(boolean set, String exportName, List<String> queries) implements NbdOption {
        @Override
        public int code() {
            return set ? NbdConstants.NBD_OPT_SET_META_CONTEXT : NbdConstants.NBD_OPT_LIST_META_CONTEXT;
        }
    }

    /** NBD_OPT_EXTENDED_HEADERS with empty data (§2.11). */
    record ExtendedHeaders() implements NbdOption {
        @Override
        public int code() {
            return NbdConstants.NBD_OPT_EXTENDED_HEADERS;
        }
    }

    /** An option this server does not know; its data was discarded (answer NBD_REP_ERR_UNSUP). */
    record Unknown(int code) implements NbdOption {
    }

    /** A known option whose data is malformed; {@code reason} is the text of the error reply. */
    record Invalid(int code, String reason) implements NbdOption {
    }
}
