namespace Qed.Nbd.Server.Transmission;

/// <summary>What one connection's transmission phase did, live: for tests of the limits and for measurements.</summary>
internal sealed class TransmissionStatistics
{
    private long _received;
    private long _inline;
    private long _dispatched;

    /// <summary>Request headers read (DISC included).</summary>
    public long RequestsReceived => Interlocked.Read(ref _received);

    /// <summary>Requests run on the reader itself.</summary>
    public long RunInline => Interlocked.Read(ref _inline);

    /// <summary>Requests run on the thread pool.</summary>
    public long RunDispatched => Interlocked.Read(ref _dispatched);

    /// <summary>Requests in flight now (admitted, reply not yet written).</summary>
    public int InFlight { get; internal set; }

    /// <summary>Most requests in flight at once.</summary>
    public int PeakInFlight { get; internal set; }

    /// <summary>Most payload bytes held at once.</summary>
    public long PeakHeldBytes { get; internal set; }

    internal void Received() => Interlocked.Increment(ref _received);

    internal void Inline() => Interlocked.Increment(ref _inline);

    internal void Dispatched() => Interlocked.Increment(ref _dispatched);
}
