package dev.shear.nbd.server;

import java.util.List;

/**
 * What a connection negotiated, fixed when it enters transmission (nbd-protocol.md §2.8-§2.11, §3).
 *
 * @param connectionId      for logs
 * @param export            the export served
 * @param structured        structured replies (or extended headers, which imply them)
 * @param extended          extended headers: 32-byte requests and replies
 * @param contexts          the selected metadata contexts (empty: no block status)
 * @param zeroCopy          file data may leave as FileRegions (no TLS in the pipeline)
 * @param transmissionFlags the flags sent to the client
 * @param maxPayload        the advertised maximum payload
 */
public record NbdSession(long connectionId, Export export, boolean structured, boolean extended,
        List<MetaContext> contexts, boolean zeroCopy, int transmissionFlags, int maxPayload) {
}
