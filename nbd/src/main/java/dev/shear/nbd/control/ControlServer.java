package dev.shear.nbd.control;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException;
import com.fasterxml.jackson.databind.exc.MismatchedInputException;
import dev.shear.fleece.job.JobEvent;
import dev.shear.nbd.server.ServerLog;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.IoHandlerFactory;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.ServerChannel;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.epoll.EpollServerDomainSocketChannel;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.nio.NioServerDomainSocketChannel;
import io.netty.channel.unix.DomainSocketAddress;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.DefaultHttpContent;
import io.netty.handler.codec.http.DefaultHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.QueryStringDecoder;
import io.netty.util.concurrent.DefaultThreadFactory;
import java.io.IOException;
import java.net.SocketAddress;
import java.net.UnixDomainSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * The control API server (design.md §Control API): HTTP/1.1 with JSON bodies on a Unix socket (mode
 * 0600), Netty's HTTP codec, Jackson. Requests are decoded on the event loop and run on a small worker
 * pool (they may do disk I/O: opening images, taking snapshots). Errors are
 * {@code {"error": "...", "field": "..."}} with 400 (malformed JSON, unknown or bad field), 404 (no
 * such resource), 405 (method), 409 (busy, exists, or not possible for this export), 500 (I/O), 503
 * (the server is shutting down).
 *
 * <pre>
 * GET    /exports                          list; POST {name, image, format?, readOnly?}: add
 * GET    /exports/{e}                      one; DELETE: remove (409 while a backup runs)
 * GET    /exports/{e}/bitmaps              list; POST {name, granularity?, enabled?}: add
 * DELETE /exports/{e}/bitmaps/{b}          remove
 * POST   /exports/{e}/bitmaps/{b}/{clear|enable|disable|merge}   merge body {sources: [...]}
 * POST   /exports/{e}/bitmaps/flush        store the image's bitmaps (in_use clear until the next write) and the
 *                                          checkpoint sidecar now (409 for raw exports)
 * GET    /exports/{e}/checkpoints          list; POST {name, description?}: create now
 * PUT    /exports/{e}/checkpoints          redefine the chain, all or nothing: {checkpoints: [{name,
 *                                          parent?, created?, description?}, ...]} oldest first (409 names
 *                                          the first checkpoint whose bitmap is missing or in_use)
 * DELETE /exports/{e}/checkpoints/{c}      delete
 * POST   /backups                          begin {export, type: pull|push, since?, checkpoint?, scratch?,
 *                                          scratchPath?, scratchCapacity?, policy?, target?, backing?, compress?}
 * GET    /backups, /backups/{id}, /jobs, /jobs/{id}    status
 * DELETE /backups/{id}, /jobs/{id}         end a pull job / abort a push job (404 if none)
 * GET    /events                           job events, one JSON object per line, streamed
 * GET    /metrics                          Prometheus text
 * </pre>
 *
 * <p>Bitmaps and checkpoints of a qcow2 export served writable are the image's persistent ones (its
 * bitmaps, its sidecar {@code IMAGE.checkpoints}; listings say {@code "persistent": true} and
 * {@code "usable": false} with the problem for a bitmap found in_use); those of a raw export live in
 * memory ({@code "persistent": false}). See {@link BackupService}.
 *
 * <p>Shutdown: from {@link #beginShutdown} on (the server's stop begins with it, before backups are
 * ended), every new request is answered 503 with a JSON error and the connection closed; requests
 * already running finish and are answered; {@link #close} then waits a little for them.
 */
public final class ControlServer implements AutoCloseable {
    private static final int MAX_BODY = 1 << 20;
    /** How long {@link #close} waits for running requests before interrupting them. */
    private static final long DRAIN_SECONDS = 5;

    private final Path socket;
    private final BackupService service;
    private final ObjectMapper json = new ObjectMapper()
            .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    private final ExecutorService workers = Executors.newFixedThreadPool(2,
            new DefaultThreadFactory("shear-control", true));
    private EventLoopGroup group;
    private Channel serverChannel;
    /** Set once the server is stopping: new requests get 503. */
    private volatile boolean stopping;

    public ControlServer(Path socket, BackupService service) {
        this.socket = socket.toAbsolutePath();
        this.service = service;
    }

    public BackupService service() {
        return service;
    }

    /** Binds the socket (replacing a stale one) and sets its mode to 0600. */
    public ControlServer start() throws IOException {
        boolean epoll = Epoll.isAvailable();
        IoHandlerFactory io = epoll ? EpollIoHandler.newFactory() : NioIoHandler.newFactory();
        group = new MultiThreadIoEventLoopGroup(1, new DefaultThreadFactory("shear-control-loop", true), io);
        Class<? extends ServerChannel> cls = epoll ? EpollServerDomainSocketChannel.class
                : NioServerDomainSocketChannel.class;
        SocketAddress address = epoll ? new DomainSocketAddress(socket.toFile()) : UnixDomainSocketAddress.of(socket);
        Files.deleteIfExists(socket);
        ServerBootstrap b = new ServerBootstrap().group(group).channel(cls).childHandler(new ChannelInitializer<>() {
            @Override
            protected void initChannel(Channel ch) {
                ch.pipeline().addLast(new HttpServerCodec(), new HttpObjectAggregator(MAX_BODY), new Handler());
            }
        });
        try {
            serverChannel = b.bind(address).syncUninterruptibly().channel();
        } catch (RuntimeException e) {
            group.shutdownGracefully(0, 0, TimeUnit.MILLISECONDS);
            throw new IOException("control: listen " + socket + ": " + e.getMessage(), e);
        }
        Files.setPosixFilePermissions(socket, PosixFilePermissions.fromString("rw-------"));
        ServerLog.info("control-listening", "socket", socket);
        return this;
    }

    /**
     * From now on every new request is answered 503 ({@code {"error": "shutting down ..."}}, connection
     * closed) instead of being run; running requests finish. Idempotent.
     */
    public void beginShutdown() {
        if (!stopping) {
            stopping = true;
            ServerLog.info("control-stopping", "socket", socket);
        }
    }

    /** Stops accepting, lets running requests finish (a few seconds at most), closes every connection. */
    @Override
    public void close() throws IOException {
        beginShutdown();
        if (serverChannel != null) {
            serverChannel.close().syncUninterruptibly();
        }
        workers.shutdown();
        try {
            if (!workers.awaitTermination(DRAIN_SECONDS, TimeUnit.SECONDS)) {
                ServerLog.warn("control-drain-timeout", "seconds", DRAIN_SECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        workers.shutdownNow();
        if (group != null) {
            // Replies queued by the workers are still written: a graceful shutdown runs pending tasks.
            group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
        }
        Files.deleteIfExists(socket);
    }

    /** One HTTP connection. */
    private final class Handler extends SimpleChannelInboundHandler<FullHttpRequest> {
        @Override
        protected void channelRead0(ChannelHandlerContext ctx, FullHttpRequest req) {
            service.controlRequests.increment();
            if (!req.decoderResult().isSuccess()) {
                send(ctx, req, 400, error("malformed HTTP request", null), true);
                return;
            }
            QueryStringDecoder q = new QueryStringDecoder(req.uri());
            String path = q.path();
            HttpMethod method = req.method();
            byte[] body = new byte[req.content().readableBytes()];
            req.content().getBytes(req.content().readerIndex(), body);
            boolean keepAlive = HttpUtil.isKeepAlive(req);
            if (stopping) {
                shuttingDown(ctx);
                return;
            }
            if (method.equals(HttpMethod.GET) && path.equals("/events")) {
                stream(ctx);
                return;
            }
            try {
                workers.execute(() -> run(ctx, method, path, body, keepAlive));
            } catch (RejectedExecutionException e) {
                shuttingDown(ctx);   // close() got there between the check and the submit
            }
        }

        /** 503 and close: the server is stopping. */
        private void shuttingDown(ChannelHandlerContext ctx) {
            service.controlErrors.increment();
            send(ctx, error("server shutting down (expected: retry once it is serving again)", null), 503, false);
        }

        /** Runs one request on a worker and sends the reply from the event loop. */
        private void run(ChannelHandlerContext ctx, HttpMethod method, String path, byte[] body, boolean keepAlive) {
            int status = 200;
            Object result;
            try {
                Object r = route(method, path, body);
                if (r instanceof Created c) {
                    status = 201;
                    r = c.body();
                }
                result = r;
            } catch (ControlException e) {
                status = e.status();
                result = error(e.getMessage(), e.field());
            } catch (UnrecognizedPropertyException e) {
                status = 400;
                result = error("unknown field '" + e.getPropertyName() + "'", e.getPropertyName());
            } catch (MismatchedInputException e) {
                status = 400;
                String field = e.getPath().isEmpty() ? null : e.getPath().get(0).getFieldName();
                result = error("bad value" + (field == null ? "" : " for '" + field + "'") + ": "
                        + e.getOriginalMessage(), field);
            } catch (JsonProcessingException e) {
                status = 400;
                result = error("malformed JSON: " + e.getOriginalMessage(), null);
            } catch (IOException e) {
                status = 500;
                result = error(e.getMessage(), null);
            } catch (RuntimeException e) {
                status = 500;
                result = error(e.getClass().getSimpleName() + ": " + e.getMessage(), null);
            }
            if (status >= 400) {
                service.controlErrors.increment();
            }
            Object out = result;
            int st = status;
            ctx.executor().execute(() -> send(ctx, out, st, keepAlive));
        }

        private void send(ChannelHandlerContext ctx, FullHttpRequest req, int status, Object body, boolean close) {
            send(ctx, body, status, !close && HttpUtil.isKeepAlive(req));
        }

        private void send(ChannelHandlerContext ctx, Object body, int status, boolean keepAlive) {
            byte[] bytes;
            String type;
            if (body instanceof String s) {
                bytes = s.getBytes(StandardCharsets.UTF_8);
                type = "text/plain; version=0.0.4; charset=utf-8";
            } else {
                try {
                    bytes = (json.writeValueAsString(body) + "\n").getBytes(StandardCharsets.UTF_8);
                } catch (JsonProcessingException e) {
                    bytes = "{\"error\":\"encoding failed\"}\n".getBytes(StandardCharsets.UTF_8);
                    status = 500;
                }
                type = "application/json";
            }
            FullHttpResponse resp = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1,
                    HttpResponseStatus.valueOf(status), Unpooled.wrappedBuffer(bytes));
            resp.headers().set(HttpHeaderNames.CONTENT_TYPE, type);
            HttpUtil.setContentLength(resp, bytes.length);
            HttpUtil.setKeepAlive(resp, keepAlive);
            if (keepAlive) {
                ctx.writeAndFlush(resp);
            } else {
                ctx.writeAndFlush(resp).addListener(ChannelFutureListener.CLOSE);
            }
        }

        /** GET /events: a chunked response that stays open, one JSON line per job event. */
        private void stream(ChannelHandlerContext ctx) {
            HttpResponse head = new DefaultHttpResponse(HttpVersion.HTTP_1_1, HttpResponseStatus.OK);
            head.headers().set(HttpHeaderNames.CONTENT_TYPE, "application/x-ndjson");
            HttpUtil.setTransferEncodingChunked(head, true);
            ctx.writeAndFlush(head);
            Consumer<JobEvent> l = e -> {
                try {
                    ByteBuf line = Unpooled.wrappedBuffer((json.writeValueAsString(event(e)) + "\n")
                            .getBytes(StandardCharsets.UTF_8));
                    ctx.writeAndFlush(new DefaultHttpContent(line));
                } catch (JsonProcessingException ex) {
                    ServerLog.warn("event-encode", "message", ex.getMessage());
                }
            };
            service.addEventListener(l);
            ctx.channel().closeFuture().addListener(f -> service.removeEventListener(l));
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            ServerLog.warn("control-error", "message", cause.getMessage());
            ctx.close();
        }
    }

    private static Map<String, Object> event(JobEvent e) {
        Map<String, Object> m = new java.util.LinkedHashMap<>();
        m.put("job", e.jobId());
        m.put("export", e.export());
        m.put("type", e.type());
        m.put("state", e.state().name().toLowerCase(java.util.Locale.ROOT));
        m.put("time", e.time().toString());
        m.put("progress", e.progress());
        m.put("message", e.message());
        return m;
    }

    private static Map<String, Object> error(String message, String field) {
        Map<String, Object> m = new java.util.LinkedHashMap<>();
        m.put("error", message);
        m.put("field", field);
        return m;
    }

    /** A 201 reply. */
    private record Created(Object body) {
    }

    private <T> T parse(byte[] body, Class<T> type) throws IOException {
        if (body.length == 0) {
            throw ControlException.badRequest("body: missing (expected: a JSON object)", null);
        }
        return json.readValue(body, type);
    }

    /** Dispatches one request; returns the JSON body (or a String for text). */
    private Object route(HttpMethod m, String path, byte[] body) throws IOException {
        List<String> p = segments(path);
        String root = p.isEmpty() ? "" : p.get(0);
        boolean get = m.equals(HttpMethod.GET);
        boolean post = m.equals(HttpMethod.POST);
        boolean delete = m.equals(HttpMethod.DELETE);
        switch (root) {
            case "metrics" -> {
                if (p.size() == 1 && get) {
                    return service.metrics();
                }
            }
            case "exports" -> {
                if (p.size() == 1) {
                    if (get) {
                        return service.listExports();
                    }
                    if (post) {
                        return new Created(service.addExport(parse(body, ControlRequests.AddExport.class)));
                    }
                } else if (p.size() == 2) {
                    if (get) {
                        return service.getExport(p.get(1));
                    }
                    if (delete) {
                        service.removeExport(p.get(1));
                        return Map.of("removed", p.get(1));
                    }
                } else if (p.get(2).equals("bitmaps")) {
                    return bitmaps(m, p, body);
                } else if (p.get(2).equals("checkpoints")) {
                    if (p.size() == 3 && get) {
                        return service.listCheckpoints(p.get(1));
                    }
                    if (p.size() == 3 && m.equals(HttpMethod.PUT)) {
                        return service.redefineCheckpoints(p.get(1),
                                parse(body, ControlRequests.RedefineCheckpoints.class));
                    }
                    if (p.size() == 3 && post) {
                        return new Created(service.addCheckpoint(p.get(1),
                                parse(body, ControlRequests.AddCheckpoint.class)));
                    }
                    if (p.size() == 4 && delete) {
                        service.removeCheckpoint(p.get(1), p.get(3));
                        return Map.of("removed", p.get(3));
                    }
                } else {
                    throw ControlException.notFound("path: " + path);
                }
            }
            case "backups", "jobs" -> {
                if (p.size() == 1 && get) {
                    return service.listJobs();
                }
                if (p.size() == 1 && post && root.equals("backups")) {
                    return new Created(service.beginBackup(parse(body, ControlRequests.BeginBackup.class)));
                }
                if (p.size() == 2 && get) {
                    return service.getJob(p.get(1));
                }
                if (p.size() == 2 && delete) {
                    return service.endJob(p.get(1));
                }
            }
            default -> throw ControlException.notFound("path: " + path + " (expected: /exports, /backups, /jobs, "
                    + "/events or /metrics)");
        }
        throw new ControlException(405, "method " + m + " on " + path + ": not allowed", null);
    }

    private Object bitmaps(HttpMethod m, List<String> p, byte[] body) throws IOException {
        String export = p.get(1);
        if (p.size() == 3) {
            if (m.equals(HttpMethod.GET)) {
                return service.listBitmaps(export);
            }
            if (m.equals(HttpMethod.POST)) {
                return new Created(service.addBitmap(export, parse(body, ControlRequests.AddBitmap.class)));
            }
        } else if (p.size() == 4 && m.equals(HttpMethod.DELETE)) {
            service.removeBitmap(export, p.get(3));
            return Map.of("removed", p.get(3));
        } else if (p.size() == 4 && m.equals(HttpMethod.POST) && p.get(3).equals("flush")) {
            return service.flushBitmaps(export);
        } else if (p.size() == 5 && m.equals(HttpMethod.POST)) {
            ControlRequests.MergeBitmaps merge = p.get(4).equals("merge")
                    ? parse(body, ControlRequests.MergeBitmaps.class) : null;
            return service.bitmapAction(export, p.get(3), p.get(4), merge);
        }
        throw new ControlException(405, "method " + m + " on /" + String.join("/", p) + ": not allowed", null);
    }

    private static List<String> segments(String path) {
        List<String> out = new java.util.ArrayList<>();
        for (String s : path.split("/")) {
            if (!s.isEmpty()) {
                out.add(QueryStringDecoder.decodeComponent(s));
            }
        }
        return out;
    }
}
