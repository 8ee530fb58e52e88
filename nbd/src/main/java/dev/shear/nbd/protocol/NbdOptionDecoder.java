package dev.shear.nbd.protocol;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.ByteToMessageDecoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Decodes the client side of the fixed-newstyle handshake (nbd-protocol.md §2.2, §2.3): first the
 * 4-byte client flags, then option requests, into {@link NbdOption}s.
 *
 * <p>Wire layout of an option request:
 * <pre>
 *   0  8  magic "IHAVEOPT" (0x49484156454F5054)
 *   8  4  option number
 *  12  4  length of option data (unsigned)
 *  16  *  option data
 * </pre>
 *
 * <p>Fatal (hard disconnect, {@link NbdProtocolException}): a wrong option magic, an option longer
 * than {@code maxOptionLength}, more than {@code maxOptions} options on one connection, unknown client
 * flag bits. Everything else, including malformed data, is decoded so that the handshake can answer
 * it: framing is never lost because the whole option is buffered before it is parsed.
 */
public final class NbdOptionDecoder extends ByteToMessageDecoder {
    /** Option header: magic, option number, length. */
    static final int HEADER_LENGTH = 16;
    /** Client flag bits we understand (§2.2); anything else is a hard disconnect, as QEMU does. */
    private static final int KNOWN_CLIENT_FLAGS = NbdConstants.NBD_FLAG_C_FIXED_NEWSTYLE
            | NbdConstants.NBD_FLAG_C_NO_ZEROES;

    private final int maxOptionLength;
    private final int maxOptions;
    /** True until the client flags were read. Event-loop confined, as all decoder state. */
    private boolean expectClientFlags;
    private int optionCount;
    /** A fatal error was thrown: everything after it is discarded. Event-loop confined. */
    private boolean failed;

    /**
     * @param maxOptionLength largest option data accepted (bounds the cumulation buffer)
     * @param maxOptions      options accepted per connection before hanging up (a client looping on
     *                        LIST or INFO is a denial of service)
     * @param expectClientFlags false when decoding resumes after STARTTLS
     */
    public NbdOptionDecoder(int maxOptionLength, int maxOptions, boolean expectClientFlags) {
        if (maxOptionLength < 4 * NbdConstants.MAX_STRING_LENGTH) {
            throw new IllegalArgumentException("maxOptionLength: " + maxOptionLength
                    + " (expected: >= " + 4 * NbdConstants.MAX_STRING_LENGTH + ")");
        }
        this.maxOptionLength = maxOptionLength;
        this.maxOptions = maxOptions;
        this.expectClientFlags = expectClientFlags;
    }

    @Override
    protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
        if (failed) {
            in.skipBytes(in.readableBytes());   // framing is lost: discard until the handler closes
            return;
        }
        if (expectClientFlags) {
            if (in.readableBytes() < 4) {
                return;
            }
            int flags = in.readInt();
            if ((flags & ~KNOWN_CLIENT_FLAGS) != 0) {
                failed = true;
            throw NbdProtocolException.fatal("client flags: 0x%08x (expected: bits of 0x%08x)",
                        flags, KNOWN_CLIENT_FLAGS);
            }
            expectClientFlags = false;
            out.add(new NbdOption.ClientFlags(flags));
            return;
        }
        if (in.readableBytes() < HEADER_LENGTH) {
            return;
        }
        int start = in.readerIndex();
        long magic = in.getLong(start);
        if (magic != NbdConstants.NBD_NEW_VERSION) {
            failed = true;
            throw NbdProtocolException.fatal("option magic: 0x%016x (expected: 0x%016x)",
                    magic, NbdConstants.NBD_NEW_VERSION);
        }
        int code = in.getInt(start + 8);
        long length = in.getUnsignedInt(start + 12);
        if (length > maxOptionLength) {
            failed = true;
            throw NbdProtocolException.fatal("option %s length: %d (expected: <= %d)",
                    NbdConstants.optionName(code), length, maxOptionLength);
        }
        if (in.readableBytes() < HEADER_LENGTH + length) {
            return;
        }
        if (++optionCount > maxOptions) {
            failed = true;
            throw NbdProtocolException.fatal("options: %d (expected: <= %d per connection)",
                    optionCount, maxOptions);
        }
        in.skipBytes(HEADER_LENGTH);
        ByteBuf data = in.readSlice((int) length);
        out.add(parse(code, data));
    }

    /** Parses one option's data; never throws for malformed data (returns {@link NbdOption.Invalid}). */
    static NbdOption parse(int code, ByteBuf data) {
        return switch (code) {
            case NbdConstants.NBD_OPT_EXPORT_NAME -> {
                String name = string(data, data.readableBytes());
                yield name == null ? invalid(code, "export name: not a valid NBD string")
                        : new NbdOption.ExportName(name);
            }
            case NbdConstants.NBD_OPT_ABORT -> new NbdOption.Abort();
            case NbdConstants.NBD_OPT_LIST -> empty(code, data, new NbdOption.ListExports());
            case NbdConstants.NBD_OPT_STARTTLS -> empty(code, data, new NbdOption.StartTls());
            case NbdConstants.NBD_OPT_STRUCTURED_REPLY -> empty(code, data, new NbdOption.StructuredReply());
            case NbdConstants.NBD_OPT_EXTENDED_HEADERS -> empty(code, data, new NbdOption.ExtendedHeaders());
            case NbdConstants.NBD_OPT_INFO, NbdConstants.NBD_OPT_GO -> parseInfo(code, data);
            case NbdConstants.NBD_OPT_LIST_META_CONTEXT, NbdConstants.NBD_OPT_SET_META_CONTEXT ->
                    parseMetaContext(code, data);
            default -> new NbdOption.Unknown(code);
        };
    }

    /*
     * INFO / GO data (§2.8):
     *   0  4  name length N (<= option length - 6)
     *   4  N  export name
     * 4+N  2  number R of information requests
     * 6+N 2R  NBD_INFO_* types
     */
    private static NbdOption parseInfo(int code, ByteBuf data) {
        int total = data.readableBytes();
        if (total < 6) {
            return invalid(code, "option length: " + total + " (expected: >= 6)");
        }
        long nameLength = data.readUnsignedInt();
        if (nameLength > total - 6) {
            return invalid(code, "name length: " + nameLength + " (expected: <= " + (total - 6) + ")");
        }
        String name = string(data, (int) nameLength);
        if (name == null) {
            return invalid(code, "export name: not a valid NBD string");
        }
        int count = data.readUnsignedShort();
        if (data.readableBytes() != 2 * count) {
            return invalid(code, "information requests: " + count + " (expected: "
                    + data.readableBytes() / 2 + " from the option length)");
        }
        int[] infos = new int[count];
        for (int i = 0; i < count; i++) {
            infos[i] = data.readUnsignedShort();
        }
        return new NbdOption.Info(code == NbdConstants.NBD_OPT_GO, name, infos);
    }

    /*
     * LIST_META_CONTEXT / SET_META_CONTEXT data (§2.10):
     *   0  4  export name length N
     *   4  N  export name
     * 4+N  4  number of queries Q
     * 8+N  *  Q x { 4 query length L, L bytes query }
     */
    private static NbdOption parseMetaContext(int code, ByteBuf data) {
        int total = data.readableBytes();
        if (total < 8) {
            return invalid(code, "option length: " + total + " (expected: >= 8)");
        }
        long nameLength = data.readUnsignedInt();
        if (nameLength > total - 8) {
            return invalid(code, "name length: " + nameLength + " (expected: <= " + (total - 8) + ")");
        }
        String name = string(data, (int) nameLength);
        if (name == null) {
            return invalid(code, "export name: not a valid NBD string");
        }
        long count = data.readUnsignedInt();
        // Each query needs at least its 4-byte length: bounds the list before allocating it.
        if (count > data.readableBytes() / 4) {
            return invalid(code, "queries: " + count + " (expected: <= " + data.readableBytes() / 4 + ")");
        }
        List<String> queries = new ArrayList<>((int) count);
        for (long i = 0; i < count; i++) {
            if (data.readableBytes() < 4) {
                return invalid(code, "query " + i + ": truncated");
            }
            long queryLength = data.readUnsignedInt();
            if (queryLength > data.readableBytes()) {
                return invalid(code, "query " + i + " length: " + queryLength + " (expected: <= "
                        + data.readableBytes() + ")");
            }
            if (queryLength > NbdConstants.MAX_STRING_LENGTH) {
                data.skipBytes((int) queryLength);   // QEMU: an over-long query is skipped, not an error
                continue;
            }
            String query = string(data, (int) queryLength);
            if (query == null) {
                return invalid(code, "query " + i + ": not a valid NBD string");
            }
            queries.add(query);
        }
        if (data.isReadable()) {
            return invalid(code, "option data: " + data.readableBytes() + " trailing bytes (expected: 0)");
        }
        return new NbdOption.MetaContext(code == NbdConstants.NBD_OPT_SET_META_CONTEXT, name, List.copyOf(queries));
    }

    private static NbdOption empty(int code, ByteBuf data, NbdOption option) {
        return data.isReadable()
                ? invalid(code, "option length: " + data.readableBytes() + " (expected: 0)")
                : option;
    }

    private static NbdOption invalid(int code, String reason) {
        return new NbdOption.Invalid(code, NbdConstants.optionName(code) + ": " + reason);
    }

    /** Reads an NBD string (UTF-8, no NUL, at most 4096 bytes), or returns null if it is not one. */
    private static String string(ByteBuf data, int length) {
        if (length > NbdConstants.MAX_STRING_LENGTH) {
            data.skipBytes(length);
            return null;
        }
        if (data.indexOf(data.readerIndex(), data.readerIndex() + length, (byte) 0) >= 0) {
            data.skipBytes(length);
            return null;
        }
        String s = data.toString(data.readerIndex(), length, StandardCharsets.UTF_8);
        data.skipBytes(length);
        return s;
    }
}
