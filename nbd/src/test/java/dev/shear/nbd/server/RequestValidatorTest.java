package dev.shear.nbd.server;

import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_HAS_FLAGS;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_READ_ONLY;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_SEND_CACHE;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_SEND_DF;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_SEND_FLUSH;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_SEND_FUA;
import static dev.shear.nbd.protocol.NbdConstants.NBD_FLAG_SEND_WRITE_ZEROES;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.shear.block.BlockErrorKind;
import dev.shear.nbd.protocol.NbdError;
import dev.shear.nbd.protocol.NbdRequest;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** One row per rule of {@link RequestValidator} and per row of the {@link NbdErrors} table. */
class RequestValidatorTest {
    static final long SIZE = 1 << 20;
    static final int MAX = 32 << 20;
    static final int RW = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_WRITE_ZEROES
            | NBD_FLAG_SEND_DF | NBD_FLAG_SEND_CACHE;
    static final int RO = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_CACHE;

    @ParameterizedTest(name = "{0}")
    @CsvSource({
        // rule,                         cmd, flags, offset,  length,   ro,    contexts, expected
        "read ok,                          0,  0,     0,       4096,     false, false, OK",
        "read zero length,                 0,  0,     0,       0,        false, false, OK",
        "read to the end,                  0,  0,     1044480, 4096,     false, false, OK",
        "read past end,                    0,  0,     1044480, 4097,     false, false, EINVAL",
        "read offset past end,             0,  0,     1048577, 0,        false, false, EINVAL",
        "read offset huge unsigned,        0,  0,     -1,      1,        false, false, EINVAL",
        "read too long,                    0,  0,     0,       33554433, false, false, EINVAL",
        "read DF advertised,               0,  4,     0,       1,        false, false, OK",
        "read FUA accepted,                0,  1,     0,       1,        false, false, OK",
        "read REQ_ONE refused,             0,  8,     0,       1,        false, false, EINVAL",
        "read unknown flag,                0,  128,   0,       1,        false, false, EINVAL",
        "write ok,                         1,  1,     0,       512,      false, false, OK",
        "write past end,                   1,  0,     1048064, 1024,     false, false, ENOSPC",
        "write read-only,                  1,  0,     0,       512,      true,  false, EPERM",
        "write NO_HOLE refused,            1,  2,     0,       512,      false, false, EINVAL",
        "zeroes NO_HOLE,                   6,  3,     0,       512,      false, false, OK",
        "zeroes FAST_ZERO not advertised,  6,  16,    0,       512,      false, false, EINVAL",
        "zeroes longer than max payload,   6,  0,     0,       1048576,  false, false, OK",
        "zeroes read-only,                 6,  0,     0,       512,      true,  false, EPERM",
        "zeroes past end,                  6,  0,     1048064, 1024,     false, false, ENOSPC",
        "trim not advertised,              4,  0,     0,       512,      false, false, EINVAL",
        "trim read-only,                   4,  0,     0,       512,      true,  false, EPERM",
        "flush ignores fields,             3,  0,     99,      99,       false, false, OK",
        "cache ok,                         5,  0,     0,       512,      true,  false, OK",
        "cache past end,                   5,  0,     1048064, 1024,     false, false, EINVAL",
        "status without context,           7,  0,     0,       512,      false, false, EINVAL",
        "status ok,                        7,  8,     0,       512,      false, true,  OK",
        "status past end is a hint,        7,  0,     4096,    2097152,  false, true,  OK",
        "status offset at end,             7,  0,     1048576, 1,        false, true,  EINVAL",
        "status zero length,               7,  0,     0,       0,        false, true,  EINVAL",
        "status FUA accepted,              7,  1,     0,       1,        false, true,  OK",
        "resize not advertised,            8,  0,     0,       0,        false, false, EINVAL",
        "unknown command,                  42, 0,     0,       0,        false, false, EINVAL",
    })
    void ruleShouldGiveExpectedError(String rule, int cmd, int flags, long offset, long length, boolean ro,
            boolean contexts, String expected) {
        NbdRequest r = NbdRequest.newInstance(flags, cmd, 1, offset, length, false, null);
        try {
            NbdError e = RequestValidator.validate(r, SIZE, ro ? RO : RW, contexts, MAX);
            assertEquals(expected, e == null ? "OK" : e.name(), rule);
        } finally {
            r.release();
        }
    }

    @ParameterizedTest(name = "{0} cmd={1} flags={2}")
    @CsvSource({
        "IO,                  0, 0,  EIO",
        "CORRUPT_IMAGE,       0, 0,  EIO",
        "NO_SPACE,            1, 0,  ENOSPC",
        "READ_ONLY,           1, 0,  EPERM",
        "OUT_OF_RANGE,        0, 0,  EINVAL",
        "OUT_OF_RANGE,        1, 0,  ENOSPC",
        "OUT_OF_RANGE,        6, 0,  ENOSPC",
        "OUT_OF_RANGE,        4, 0,  EINVAL",
        "NOT_SUPPORTED,       6, 16, ENOTSUP",
        "NOT_SUPPORTED,       6, 0,  EINVAL",
        "OVERFLOW,            0, 4,  EOVERFLOW",
        "OVERFLOW,            0, 0,  EINVAL",
        "SHUTDOWN,            0, 0,  ESHUTDOWN",
        "INVALID_ARGUMENT,    0, 0,  EINVAL",
        "INVALID_FORMAT,      0, 0,  EINVAL",
        "UNSUPPORTED_FEATURE, 0, 0,  EINVAL",
    })
    void errorKindShouldMapToWireErrno(BlockErrorKind kind, int cmd, int flags, NbdError expected) {
        assertEquals(expected, NbdErrors.toWire(kind, cmd, flags));
    }
}
