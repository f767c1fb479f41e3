using Qed.Nbd.Server.Transmission;

namespace Qed.Nbd.Server;

// The request loop of one connection (NBD.md 2, 3.5, 6.3):
//
// 1. One reader parses requests: the 28-byte header (wrong magic: drop), then for a WRITE its payload, read in full
//    before anything is decided so the stream never desyncs. A WRITE above twice the maximum payload is dropped; one
//    above the maximum is drained and refused with EINVAL.
// 2. Admission: a request takes a slot (MaxRequestsInFlight) and its payload bytes count against
//    MaxBufferedBytesPerConnection (one request up to MaxPayload is always admitted when nothing else is held). When
//    full, the reader waits and stops reading the socket: TCP back-pressure does the rest.
// 3. Validation in the spec's order (RequestValidation): command, flags, read-only (EPERM), range (EINVAL, or ENOSPC
//    for writes), READ length. A refused request is answered at once; the connection stays.
// 4. Execution (RequestExecutor): small READ/WRITE without FUA run on the reader with the blocking engine calls (cached
//    data: no thread hop, which is what depth-1 latency needs); everything else runs on the thread pool with the async
//    engine calls, concurrently, completing in any order. Engine failures become error replies (EIO, ENOSPC...).
// 5. Replies (ReplyWriter): each reply is a list of buffers (headers from pooled scratch, data from pooled segments)
//    written as one unit; whoever finishes a request while no write runs writes everything queued in one gather-write,
//    detached from the reader, so reader and writer never wait on each other. Replies of requests the reader already
//    has are held only while it parses them, never across a wait for the network (NBD.md 8.4). On unix sockets, a
//    large READ of one stretch of an image file goes from the page cache to the socket with sendfile
//    (FileRangeSender): no copy through our memory, which is most of what large reads cost.
// 6. The end: DISC, EOF, server stop (the token), idle timeout or a lost stream stop the reader; every request already
//    received is still finished and answered (writes abandoned DefaultStopGrace after a stop if the client does not read),
//    then RunAsync returns (or throws what lost the stream).

/// <summary>The transmission phase of one connection: requests read, run concurrently, replies written as they complete.</summary>
internal static class NbdTransmissionLoop
{
    /// <summary>
    /// Serves <paramref name="session"/> until the client sends DISC or closes, or <paramref name="cancellationToken"/>
    /// asks the server to stop; in every case the requests already received are finished and answered first.
    /// </summary>
    public static Task RunAsync(NbdSession session, NbdServerContext server, CancellationToken cancellationToken) =>
        RunAsync(session, server, cancellationToken, statistics: null);

    /// <summary>
    /// As <see cref="RunAsync(NbdSession, NbdServerContext, CancellationToken)"/>, reporting what happened into
    /// <paramref name="statistics"/>; <paramref name="stopGrace"/> replaces the time replies may take after a stop.
    /// </summary>
    internal static Task RunAsync(NbdSession session, NbdServerContext server, CancellationToken cancellationToken, TransmissionStatistics? statistics, TimeSpan? stopGrace = null)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(server);
        return new TransmissionConnection(session, server, statistics, stopGrace).RunAsync(cancellationToken);
    }
}
