package dev.shear.nbd.protocol;

import io.netty.handler.codec.DecoderException;
import java.util.Locale;

/**
 * A connection-fatal protocol violation (style.md §3): framing is lost or the peer broke a MUST the
 * protocol answers with a hard disconnect (nbd-protocol.md §8.2). The handler that sees it logs once
 * and closes the channel; request- and option-scoped errors are never exceptions.
 */
public final class NbdProtocolException extends DecoderException {
    private static final long serialVersionUID = 1L;

    private NbdProtocolException(String message) {
        super(message);
    }

    /** {@code field: value (expected: constraint)}, formatted with {@link Locale#ROOT}. */
    public static NbdProtocolException fatal(String format, Object... args) {
        return new NbdProtocolException(args.length == 0 ? format : String.format(Locale.ROOT, format, args));
    }
}
