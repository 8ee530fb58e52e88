package dev.shear.nbd.server;

import static dev.shear.nbd.protocol.NbdConstants.optionName;
import static dev.shear.nbd.protocol.NbdConstants.replyTypeName;
import static dev.shear.nbd.protocol.NbdConstants.NBD_CMD_DISC;
import static dev.shear.nbd.protocol.NbdConstants.NBD_EXTENDED_REPLY_MAGIC;
import static dev.shear.nbd.protocol.NbdConstants.NBD_EXTENDED_REQUEST_MAGIC;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_C_FIXED_NEWSTYLE;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_C_NO_ZEROES;
import static dev.shear.nbd.protocol.NbdConstants.NBD_INFO_BLOCK_SIZE;
import static dev.shear.nbd.protocol.NbdConstants.NBD_INFO_EXPORT;
import static dev.shear.nbd.protocol.NbdConstants.NBD_MAGIC;
import static dev.shear.nbd.protocol.NbdConstants.NBD_NEW_VERSION;
import static dev.shear.nbd.protocol.NbdConstants.NBD_OPT_EXTENDED_HEADERS;
import static dev.shear.nbd.protocol.NbdConstants.NBD_OPT_GO;
import static dev.shear.nbd.protocol.NbdConstants.NBD_OPT_LIST_META_CONTEXT;
import static dev.shear.nbd.protocol.NbdConstants.NBD_OPT_SET_META_CONTEXT;
import static dev.shear.nbd.protocol.NbdConstants.NBD_OPT_STRUCTURED_REPLY;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REPLY_FLAG_DONE;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REPLY_TYPE_ERROR;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REPLY_TYPE_OFFSET_DATA;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REPLY_TYPE_OFFSET_HOLE;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REP_ACK;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REP_FLAG_ERROR;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REP_INFO;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REP_MAGIC;
import static dev.shear.nbd.protocol.NbdConstants.NBD_REQUEST_MAGIC;
import static dev.shear.nbd.protocol.NbdConstants.NBD_SIMPLE_REPLY_MAGIC;
import static dev.shear.nbd.protocol.NbdConstants.NBD_STRUCTURED_REPLY_MAGIC;

import java.io.EOFException;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A small blocking raw-socket NBD client for tests: it sends exactly the bytes a test asks for, so
 * malformed input can be produced, and it decodes replies strictly (magic, lengths).
 */
final class NbdTestClient implements AutoCloseable {
    record OptionReply(int option, int type, byte[] data) {
        boolean isError() {
            return (type & NBD_REP_FLAG_ERROR) != 0;
        }

        String text() {
            return new String(data, StandardCharsets.UTF_8);
        }
    }

    /** A structured or extended chunk; {@code offset} is the extended header's request offset. */
    record Chunk(int flags, int type, long cookie, long offset, byte[] payload) {
        boolean done() {
            return (flags & NBD_REPLY_FLAG_DONE) != 0;
        }

        ByteBuffer buffer() {
            return ByteBuffer.wrap(payload);
        }
    }

    record Simple(int error, long cookie, byte[] data) {
    }

    private final SocketChannel ch;
    boolean extended;
    int handshakeFlags;
    long exportSize;
    int transmissionFlags;

    private NbdTestClient(SocketChannel ch) {
        this.ch = ch;
    }

    /** Connects and reads the greeting; does not send client flags. */
    static NbdTestClient open(Path socket) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        ch.connect(UnixDomainSocketAddress.of(socket));
        NbdTestClient c = new NbdTestClient(ch);
        ByteBuffer g = c.read(18);
        if (g.getLong() != NBD_MAGIC || g.getLong() != NBD_NEW_VERSION) {
            throw new IOException("bad greeting");
        }
        c.handshakeFlags = g.getShort() & 0xffff;
        return c;
    }

    /** Connects and sends the client flags 0x3, as libnbd and QEMU do. */
    static NbdTestClient connect(Path socket) throws IOException {
        NbdTestClient c = open(socket);
        c.send(ByteBuffer.allocate(4).putInt(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES).flip());
        return c;
    }

    void send(ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    void sendBytes(byte[] b) throws IOException {
        send(ByteBuffer.wrap(b));
    }

    ByteBuffer read(int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            if (ch.read(b) < 0) {
                throw new EOFException("server closed after " + b.position() + " of " + n + " bytes");
            }
        }
        return b.flip();
    }

    /** True if the server closed the connection (reads EOF); fails if it sends anything. */
    boolean closedByServer() throws IOException {
        ByteBuffer b = ByteBuffer.allocate(1);
        try {
            return ch.read(b) < 0;
        } catch (IOException e) {
            return true;   // connection reset
        }
    }

    void sendOption(int option, byte[] data) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(16 + data.length);
        b.putLong(NBD_NEW_VERSION).putInt(option).putInt(data.length).put(data).flip();
        send(b);
    }

    OptionReply readOptionReply() throws IOException {
        ByteBuffer h = read(20);
        long magic = h.getLong();
        if (magic != NBD_REP_MAGIC) {
            throw new IOException("option reply magic 0x" + Long.toHexString(magic));
        }
        int option = h.getInt();
        int type = h.getInt();
        int length = h.getInt();
        return new OptionReply(option, type, read(length).array());
    }

    /** Reads replies up to and including the final one (ACK or an error). */
    List<OptionReply> readUntilFinal() throws IOException {
        List<OptionReply> all = new ArrayList<>();
        while (true) {
            OptionReply r = readOptionReply();
            all.add(r);
            if (r.type() == NBD_REP_ACK || r.isError()) {
                return all;
            }
        }
    }

    OptionReply option(int option) throws IOException {
        sendOption(option, new byte[0]);
        return readOptionReply();
    }

    static byte[] infoData(String name, int... infos) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(4 + n.length + 2 + 2 * infos.length);
        b.putInt(n.length).put(n).putShort((short) infos.length);
        for (int i : infos) {
            b.putShort((short) i);
        }
        return b.array();
    }

    static byte[] metaData(String name, String... queries) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        int len = 8 + n.length;
        for (String q : queries) {
            len += 4 + q.getBytes(StandardCharsets.UTF_8).length;
        }
        ByteBuffer b = ByteBuffer.allocate(len);
        b.putInt(n.length).put(n).putInt(queries.length);
        for (String q : queries) {
            byte[] qb = q.getBytes(StandardCharsets.UTF_8);
            b.putInt(qb.length).put(qb);
        }
        return b.array();
    }

    List<OptionReply> meta(boolean set, String export, String... queries) throws IOException {
        sendOption(set ? NBD_OPT_SET_META_CONTEXT : NBD_OPT_LIST_META_CONTEXT, metaData(export, queries));
        return readUntilFinal();
    }

    /** GO; on success records the export size and flags. */
    List<OptionReply> go(String export, int... infos) throws IOException {
        sendOption(NBD_OPT_GO, infoData(export, infos));
        List<OptionReply> replies = readUntilFinal();
        for (OptionReply r : replies) {
            if (r.type() == NBD_REP_INFO && ByteBuffer.wrap(r.data()).getShort() == NBD_INFO_EXPORT) {
                ByteBuffer b = ByteBuffer.wrap(r.data());
                b.getShort();
                exportSize = b.getLong();
                transmissionFlags = b.getShort() & 0xffff;
            }
        }
        return replies;
    }

    /** STRUCTURED_REPLY, optional SET_META_CONTEXT, GO: the usual client sequence. */
    void negotiate(String export, boolean structured, String... contexts) throws IOException {
        if (structured) {
            check(option(NBD_OPT_STRUCTURED_REPLY));
        }
        if (contexts.length > 0) {
            check(last(meta(true, export, contexts)));
        }
        check(last(go(export, NBD_INFO_BLOCK_SIZE)));
    }

    void negotiateExtended(String export, String... contexts) throws IOException {
        check(option(NBD_OPT_EXTENDED_HEADERS));
        extended = true;
        if (contexts.length > 0) {
            check(last(meta(true, export, contexts)));
        }
        check(last(go(export, NBD_INFO_BLOCK_SIZE)));
    }

    static OptionReply last(List<OptionReply> replies) {
        return replies.get(replies.size() - 1);
    }

    static void check(OptionReply r) throws IOException {
        if (r.type() != NBD_REP_ACK) {
            throw new IOException("option " + optionName(r.option()) + ": " + replyTypeName(r.type()) + " "
                    + r.text());
        }
    }

    void request(int flags, int type, long cookie, long offset, long length, byte[] payload) throws IOException {
        int n = payload == null ? 0 : payload.length;
        ByteBuffer b = ByteBuffer.allocate((extended ? 32 : 28) + n);
        b.putInt(extended ? NBD_EXTENDED_REQUEST_MAGIC : NBD_REQUEST_MAGIC).putShort((short) flags)
                .putShort((short) type).putLong(cookie).putLong(offset);
        if (extended) {
            b.putLong(length);
        } else {
            b.putInt((int) length);
        }
        if (payload != null) {
            b.put(payload);
        }
        send(b.flip());
    }

    /** Reads one simple reply; {@code dataLength} bytes follow a successful READ. */
    Simple readSimple(int dataLength) throws IOException {
        ByteBuffer h = read(16);
        int magic = h.getInt();
        if (magic != NBD_SIMPLE_REPLY_MAGIC) {
            throw new IOException("simple reply magic 0x" + Integer.toHexString(magic));
        }
        int error = h.getInt();
        long cookie = h.getLong();
        byte[] data = error == 0 && dataLength > 0 ? read(dataLength).array() : new byte[0];
        return new Simple(error, cookie, data);
    }

    Chunk readChunk() throws IOException {
        if (extended) {
            ByteBuffer h = read(32);
            int magic = h.getInt();
            if (magic != NBD_EXTENDED_REPLY_MAGIC) {
                throw new IOException("extended reply magic 0x" + Integer.toHexString(magic));
            }
            int flags = h.getShort() & 0xffff;
            int type = h.getShort() & 0xffff;
            long cookie = h.getLong();
            long offset = h.getLong();
            long length = h.getLong();
            return new Chunk(flags, type, cookie, offset, read(Math.toIntExact(length)).array());
        }
        ByteBuffer h = read(20);
        int magic = h.getInt();
        if (magic != NBD_STRUCTURED_REPLY_MAGIC) {
            throw new IOException("structured reply magic 0x" + Integer.toHexString(magic));
        }
        int flags = h.getShort() & 0xffff;
        int type = h.getShort() & 0xffff;
        long cookie = h.getLong();
        int length = h.getInt();
        return new Chunk(flags, type, cookie, -1, read(length).array());
    }

    /** Reads chunks until one with DONE. */
    List<Chunk> readReply() throws IOException {
        List<Chunk> chunks = new ArrayList<>();
        Chunk c;
        do {
            c = readChunk();
            chunks.add(c);
        } while (!c.done());
        return chunks;
    }

    /** A structured READ reassembled into bytes; fails on an error chunk. */
    byte[] readData(long cookie, long offset, int length) throws IOException {
        List<Chunk> chunks = readReply();
        for (Chunk c : chunks) {
            if (c.cookie() != cookie) {
                throw new IOException("cookie 0x" + Long.toHexString(c.cookie()));
            }
        }
        return readDataOf(chunks, offset, length);
    }

    /** Reassembles the content chunks of one READ reply. */
    byte[] readDataOf(List<Chunk> chunks, long offset, int length) throws IOException {
        byte[] out = new byte[length];
        long covered = 0;
        for (Chunk c : chunks) {
            ByteBuffer p = c.buffer();
            if (c.type() == NBD_REPLY_TYPE_OFFSET_DATA) {
                long at = p.getLong() - offset;
                int n = p.remaining();
                p.get(out, (int) at, n);
                covered += n;
            } else if (c.type() == NBD_REPLY_TYPE_OFFSET_HOLE) {
                p.getLong();
                covered += p.getInt();
            } else if ((c.type() & 0x8000) != 0) {
                throw new IOException("error chunk " + p.getInt());
            }
        }
        if (covered != length) {
            throw new IOException("read covered " + covered + " of " + length);
        }
        return out;
    }

    /** The error of a reply that must be one error chunk (structured/extended) with DONE. */
    int readErrorChunk(long cookie) throws IOException {
        Chunk c = readChunk();
        if (c.cookie() != cookie || c.type() != NBD_REPLY_TYPE_ERROR || !c.done()) {
            throw new IOException("expected error chunk, got type " + c.type() + " cookie " + c.cookie());
        }
        return c.buffer().getInt();
    }

    void disconnect() throws IOException {
        request(0, NBD_CMD_DISC, 0, 0, 0, null);
    }

    @Override
    public void close() throws IOException {
        ch.close();
    }
}
