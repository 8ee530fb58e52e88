package dev.shear.nbd.server;

import java.util.concurrent.Executor;
import java.util.function.BooleanSupplier;

/**
 * What every connection's handlers share: exports, limits, the I/O pool and the shutdown state.
 *
 * @param shuttingDown true once the server stops; options are then answered NBD_REP_ERR_SHUTDOWN
 */
record ServerContext(ExportRegistry exports, NbdServerConfig config, Executor ioPool,
        BooleanSupplier shuttingDown) {
}
