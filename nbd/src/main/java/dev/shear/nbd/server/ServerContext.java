package dev.shear.nbd.server;

import io.netty.channel.EventLoopGroup;
import java.util.concurrent.Executor;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * What every connection's handlers share: exports, limits, the I/O pool, the backup loops and the
 * shutdown state.
 *
 * @param shuttingDown true once the server stops; options are then answered NBD_REP_ERR_SHUTDOWN
 * @param backupLoops  the event loops that serve background exports' connections (see {@link BackupLoop});
 *                     made when the server starts
 */
record ServerContext(ExportRegistry exports, NbdServerConfig config, Executor ioPool,
        BooleanSupplier shuttingDown, Supplier<EventLoopGroup> backupLoops) {
}
