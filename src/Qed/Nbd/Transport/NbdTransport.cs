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
    private const int ReceiveBufferSize = 64 * 1024;

    private readonly byte[] receiveBuffer = new byte[ReceiveBufferSize];
    private int bufferStart;
    private int bufferEnd;

    /// <summary>Bytes already received from the peer and not yet consumed; STARTTLS must see none (NBD.md 5.3).</summary>
    public int BufferedBytes => bufferEnd - bufferStart;

    /// <summary>True once the stream is encrypted.</summary>
    public virtual bool IsTls => false;

    /// <summary>
    /// Fills <paramref name="destination"/> entirely. Returns false when the peer closed the connection before the first
    /// byte (a clean end between messages).
    /// </summary>
    /// <remarks>
    /// Small reads come out of a receive buffer, so that a burst of pipelined request headers costs one system call;
    /// large ones (WRITE payloads) go straight into <paramref name="destination"/>.
    /// </remarks>
    /// <exception cref="EndOfStreamException">The peer closed the connection part-way through.</exception>
    public async ValueTask<bool> ReadExactlyAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        int filled = 0;
        while (filled < destination.Length)
        {
            if (bufferEnd > bufferStart)
            {
                int take = Math.Min(bufferEnd - bufferStart, destination.Length - filled);
                receiveBuffer.AsSpan(bufferStart, take).CopyTo(destination.Span[filled..]);
                bufferStart += take;
                filled += take;
                continue;
            }

            int received;
            if (destination.Length - filled >= ReceiveBufferSize / 2)
            {
                received = await ReceiveAsync(destination[filled..], cancellationToken).ConfigureAwait(false);
                filled += received;
            }
            else
            {
                bufferStart = 0;
                bufferEnd = received = await ReceiveAsync(receiveBuffer.AsMemory(), cancellationToken).ConfigureAwait(false);
            }

            if (received == 0)
            {
                return filled == 0 ? false : throw new EndOfStreamException("the peer closed the connection part-way through a message");
            }
        }

        return true;
    }

    /// <summary>Receives what has arrived, at most <paramref name="destination"/>'s length; 0 when the peer closed the connection.</summary>
    protected abstract ValueTask<int> ReceiveAsync(Memory<byte> destination, CancellationToken cancellationToken);

    /// <summary>Writes <paramref name="header"/> then <paramref name="payload"/> as one unit (one gather-write where the transport can).</summary>
    public abstract ValueTask WriteAsync(ReadOnlyMemory<byte> header, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken);

    /// <summary>Writes several buffers, in order, as one unit.</summary>
    public abstract ValueTask WriteAsync(IReadOnlyList<ReadOnlyMemory<byte>> buffers, CancellationToken cancellationToken);

    /// <summary>Ends the conversation politely: TLS close_notify where TLS is on, then a socket shutdown for sending.</summary>
    public abstract ValueTask ShutdownAsync(CancellationToken cancellationToken);

    /// <summary>Closes the connection (after <see cref="ShutdownAsync"/> or instead of it, to drop a client).</summary>
    public abstract ValueTask DisposeAsync();
}
