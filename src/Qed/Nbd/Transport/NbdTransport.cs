namespace Qed.Nbd.Transport;

/// <summary>
/// One NBD connection's byte stream, for the server and the client alike: buffered reads of exact sizes and writes
/// that put a header and its payload on the wire as one unit.
/// </summary>
/// <remarks>
/// Reads and writes are independent (one reader loop and one writer may run at the same time), but neither is
/// thread-safe on its own: callers serialise their reads, and serialise their writes (one reply at a time).
/// </remarks>
internal abstract class NbdTransport : IAsyncDisposable
{
    /// <summary>Bytes already received from the peer and not yet consumed; STARTTLS must see none (NBD.md 5.3).</summary>
    public abstract int BufferedBytes { get; }

    /// <summary>True once the stream is encrypted.</summary>
    public virtual bool IsTls => false;

    /// <summary>
    /// Fills <paramref name="destination"/> entirely. Returns false when the peer closed the connection before the first
    /// byte (a clean end between messages).
    /// </summary>
    /// <exception cref="EndOfStreamException">The peer closed the connection part-way through.</exception>
    public abstract ValueTask<bool> ReadExactlyAsync(Memory<byte> destination, CancellationToken cancellationToken);

    /// <summary>Writes <paramref name="header"/> then <paramref name="payload"/> as one unit (one gather-write where the transport can).</summary>
    public abstract ValueTask WriteAsync(ReadOnlyMemory<byte> header, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken);

    /// <summary>Writes several buffers, in order, as one unit.</summary>
    public abstract ValueTask WriteAsync(IReadOnlyList<ReadOnlyMemory<byte>> buffers, CancellationToken cancellationToken);

    /// <summary>Ends the conversation politely: TLS close_notify where TLS is on, then a socket shutdown for sending.</summary>
    public abstract ValueTask ShutdownAsync(CancellationToken cancellationToken);

    /// <summary>Closes the connection (after <see cref="ShutdownAsync"/> or instead of it, to drop a client).</summary>
    public abstract ValueTask DisposeAsync();
}
