package dev.shear.nbd.protocol;

/**
 * Every number of the NBD wire protocol, spelled as the specification spells it
 * (shared/docs/nbd-protocol.md; NetworkBlockDevice/nbd doc/proto.md; nbdkit common/protocol/nbd-protocol.h),
 * plus the name tables used in logs and error messages (nbdkit protostrings).
 *
 * <p>All values are big-endian on the wire. Unsigned 16- and 32-bit fields are held in Java ints;
 * compare them with the constants here, never with arithmetic on the sign.
 */
public final class NbdConstants {

    // §2.1 Greeting and §2.3 option requests.
    /** "NBDMAGIC". */
    public static final long NBD_MAGIC = 0x4e42444d41474943L;
    /** "IHAVEOPT": the newstyle magic, also the magic of every option request. */
    public static final long NBD_NEW_VERSION = 0x49484156454F5054L;
    /** Magic of every option reply (§2.4). */
    public static final long NBD_REP_MAGIC = 0x0003e889045565a9L;

    // §2.1 handshake flags (server) and §2.2 client flags.
    public static final int NBD_FLAG_FIXED_NEWSTYLE = 1;
    public static final int NBD_FLAG_NO_ZEROES = 1 << 1;
    public static final int NBD_FLAG_C_FIXED_NEWSTYLE = 1;
    public static final int NBD_FLAG_C_NO_ZEROES = 1 << 1;

    // §2.5 option numbers.
    public static final int NBD_OPT_EXPORT_NAME = 1;
    public static final int NBD_OPT_ABORT = 2;
    public static final int NBD_OPT_LIST = 3;
    public static final int NBD_OPT_PEEK_EXPORT = 4;
    public static final int NBD_OPT_STARTTLS = 5;
    public static final int NBD_OPT_INFO = 6;
    public static final int NBD_OPT_GO = 7;
    public static final int NBD_OPT_STRUCTURED_REPLY = 8;
    public static final int NBD_OPT_LIST_META_CONTEXT = 9;
    public static final int NBD_OPT_SET_META_CONTEXT = 10;
    public static final int NBD_OPT_EXTENDED_HEADERS = 11;

    // §2.4 option reply types; errors have bit 31 set.
    public static final int NBD_REP_ACK = 1;
    public static final int NBD_REP_SERVER = 2;
    public static final int NBD_REP_INFO = 3;
    public static final int NBD_REP_META_CONTEXT = 4;
    public static final int NBD_REP_FLAG_ERROR = 1 << 31;
    public static final int NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR | 1;
    public static final int NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR | 2;
    public static final int NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR | 3;
    public static final int NBD_REP_ERR_PLATFORM = NBD_REP_FLAG_ERROR | 4;
    public static final int NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR | 5;
    public static final int NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR | 6;
    public static final int NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR | 7;
    public static final int NBD_REP_ERR_BLOCK_SIZE_REQD = NBD_REP_FLAG_ERROR | 8;
    public static final int NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR | 9;
    public static final int NBD_REP_ERR_EXT_HEADER_REQD = NBD_REP_FLAG_ERROR | 10;

    // §2.8 information types.
    public static final int NBD_INFO_EXPORT = 0;
    public static final int NBD_INFO_NAME = 1;
    public static final int NBD_INFO_DESCRIPTION = 2;
    public static final int NBD_INFO_BLOCK_SIZE = 3;

    // §3 transmission flags.
    public static final int NBD_FLAG_HAS_FLAGS = 1;
    public static final int NBD_FLAG_READ_ONLY = 1 << 1;
    public static final int NBD_FLAG_SEND_FLUSH = 1 << 2;
    public static final int NBD_FLAG_SEND_FUA = 1 << 3;
    public static final int NBD_FLAG_ROTATIONAL = 1 << 4;
    public static final int NBD_FLAG_SEND_TRIM = 1 << 5;
    public static final int NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
    public static final int NBD_FLAG_SEND_DF = 1 << 7;
    public static final int NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
    public static final int NBD_FLAG_SEND_RESIZE = 1 << 9;
    public static final int NBD_FLAG_SEND_CACHE = 1 << 10;
    public static final int NBD_FLAG_SEND_FAST_ZERO = 1 << 11;
    public static final int NBD_FLAG_BLOCK_STATUS_PAYLOAD = 1 << 12;

    // §4 request magics.
    public static final int NBD_REQUEST_MAGIC = 0x25609513;
    public static final int NBD_EXTENDED_REQUEST_MAGIC = 0x21e41c71;

    // §4.3 command types.
    public static final int NBD_CMD_READ = 0;
    public static final int NBD_CMD_WRITE = 1;
    public static final int NBD_CMD_DISC = 2;
    public static final int NBD_CMD_FLUSH = 3;
    public static final int NBD_CMD_TRIM = 4;
    public static final int NBD_CMD_CACHE = 5;
    public static final int NBD_CMD_WRITE_ZEROES = 6;
    public static final int NBD_CMD_BLOCK_STATUS = 7;
    public static final int NBD_CMD_RESIZE = 8;

    // §4.4 command flags.
    public static final int NBD_CMD_FLAG_FUA = 1;
    public static final int NBD_CMD_FLAG_NO_HOLE = 1 << 1;
    public static final int NBD_CMD_FLAG_DF = 1 << 2;
    public static final int NBD_CMD_FLAG_REQ_ONE = 1 << 3;
    public static final int NBD_CMD_FLAG_FAST_ZERO = 1 << 4;
    public static final int NBD_CMD_FLAG_PAYLOAD_LEN = 1 << 5;

    // §5 reply magics, flags and chunk types.
    public static final int NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
    public static final int NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;
    public static final int NBD_EXTENDED_REPLY_MAGIC = 0x6e8a278c;
    public static final int NBD_REPLY_FLAG_DONE = 1;
    public static final int NBD_REPLY_TYPE_NONE = 0;
    public static final int NBD_REPLY_TYPE_OFFSET_DATA = 1;
    public static final int NBD_REPLY_TYPE_OFFSET_HOLE = 2;
    public static final int NBD_REPLY_TYPE_BLOCK_STATUS = 5;
    public static final int NBD_REPLY_TYPE_BLOCK_STATUS_EXT = 6;
    public static final int NBD_REPLY_TYPE_ERROR = (1 << 15) | 1;
    public static final int NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2;

    // §7 metadata context state bits.
    public static final int NBD_STATE_HOLE = 1;
    public static final int NBD_STATE_ZERO = 1 << 1;
    public static final int NBD_STATE_DIRTY = 1;

    /** Header sizes (§4.1, §4.2, §5.1-§5.3). */
    public static final int REQUEST_HEADER_LENGTH = 28;
    public static final int EXTENDED_REQUEST_HEADER_LENGTH = 32;
    public static final int SIMPLE_REPLY_HEADER_LENGTH = 16;
    public static final int STRUCTURED_REPLY_HEADER_LENGTH = 20;
    public static final int EXTENDED_REPLY_HEADER_LENGTH = 32;

    /** Strings (names, descriptions, queries, messages) MUST be at most 4096 bytes (§1). */
    public static final int MAX_STRING_LENGTH = 4096;

    private NbdConstants() {
    }

    /** "NBD_OPT_GO" for 7, "NBD_OPT_UNKNOWN(99)" otherwise. */
    public static String optionName(int option) {
        return switch (option) {
            case NBD_OPT_EXPORT_NAME -> "NBD_OPT_EXPORT_NAME";
            case NBD_OPT_ABORT -> "NBD_OPT_ABORT";
            case NBD_OPT_LIST -> "NBD_OPT_LIST";
            case NBD_OPT_PEEK_EXPORT -> "NBD_OPT_PEEK_EXPORT";
            case NBD_OPT_STARTTLS -> "NBD_OPT_STARTTLS";
            case NBD_OPT_INFO -> "NBD_OPT_INFO";
            case NBD_OPT_GO -> "NBD_OPT_GO";
            case NBD_OPT_STRUCTURED_REPLY -> "NBD_OPT_STRUCTURED_REPLY";
            case NBD_OPT_LIST_META_CONTEXT -> "NBD_OPT_LIST_META_CONTEXT";
            case NBD_OPT_SET_META_CONTEXT -> "NBD_OPT_SET_META_CONTEXT";
            case NBD_OPT_EXTENDED_HEADERS -> "NBD_OPT_EXTENDED_HEADERS";
            default -> "NBD_OPT_UNKNOWN(" + Integer.toUnsignedString(option) + ")";
        };
    }

    /** "READ" for 0 (short names for key=value logs), "UNKNOWN(9)" otherwise. */
    public static String commandName(int command) {
        return switch (command) {
            case NBD_CMD_READ -> "READ";
            case NBD_CMD_WRITE -> "WRITE";
            case NBD_CMD_DISC -> "DISC";
            case NBD_CMD_FLUSH -> "FLUSH";
            case NBD_CMD_TRIM -> "TRIM";
            case NBD_CMD_CACHE -> "CACHE";
            case NBD_CMD_WRITE_ZEROES -> "WRITE_ZEROES";
            case NBD_CMD_BLOCK_STATUS -> "BLOCK_STATUS";
            case NBD_CMD_RESIZE -> "RESIZE";
            default -> "UNKNOWN(" + command + ")";
        };
    }

    /** "NBD_REP_ERR_UNSUP" for 0x80000001, hex otherwise. */
    public static String replyTypeName(int type) {
        return switch (type) {
            case NBD_REP_ACK -> "NBD_REP_ACK";
            case NBD_REP_SERVER -> "NBD_REP_SERVER";
            case NBD_REP_INFO -> "NBD_REP_INFO";
            case NBD_REP_META_CONTEXT -> "NBD_REP_META_CONTEXT";
            case NBD_REP_ERR_UNSUP -> "NBD_REP_ERR_UNSUP";
            case NBD_REP_ERR_POLICY -> "NBD_REP_ERR_POLICY";
            case NBD_REP_ERR_INVALID -> "NBD_REP_ERR_INVALID";
            case NBD_REP_ERR_PLATFORM -> "NBD_REP_ERR_PLATFORM";
            case NBD_REP_ERR_TLS_REQD -> "NBD_REP_ERR_TLS_REQD";
            case NBD_REP_ERR_UNKNOWN -> "NBD_REP_ERR_UNKNOWN";
            case NBD_REP_ERR_SHUTDOWN -> "NBD_REP_ERR_SHUTDOWN";
            case NBD_REP_ERR_BLOCK_SIZE_REQD -> "NBD_REP_ERR_BLOCK_SIZE_REQD";
            case NBD_REP_ERR_TOO_BIG -> "NBD_REP_ERR_TOO_BIG";
            case NBD_REP_ERR_EXT_HEADER_REQD -> "NBD_REP_ERR_EXT_HEADER_REQD";
            default -> "0x" + Integer.toHexString(type);
        };
    }
}
