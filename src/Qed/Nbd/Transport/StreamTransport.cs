using System.Net.Security;

namespace Qed.Nbd.Transport;

/// <summary>
/// A transport over a <see cref="Stream"/>: the <see cref="SslStream"/> after STARTTLS, or any stream in tests. A header
/// and a small payload are copied into one buffer so that they leave as one TLS record.
/// </summary>
internal sealed class StreamTransport : NbdTransport
{
    private const int CoalesceLimit = 16 * 1024;

    private readonly Stream stream;
    private readonly byte[] sendBuffer = new byte[CoalesceLimit];
    private int disposed;

    public StreamTransport(Stream stream) => this.stream = stream;

    public override bool IsTls => stream is SslStream;

    protected override ValueTask<int> ReceiveAsync(Memory<byte> destination, CancellationToken cancellationToken) =>
        stream.ReadAsync(destination, cancellationToken);

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> header, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        if (header.Length + payload.Length <= CoalesceLimit)
        {
            header.CopyTo(sendBuffer);
            payload.CopyTo(sendBuffer.AsMemory(header.Length));
            await stream.WriteAsync(sendBuffer.AsMemory(0, header.Length + payload.Length), cancellationToken).ConfigureAwait(false);
        }
        else
        {
            await stream.WriteAsync(header, cancellationToken).ConfigureAwait(false);
            await stream.WriteAsync(payload, cancellationToken).ConfigureAwait(false);
        }

        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public override async ValueTask WriteAsync(IReadOnlyList<ReadOnlyMemory<byte>> buffers, CancellationToken cancellationToken)
    {
        int used = 0;
        foreach (var buffer in buffers)
        {
            if (used + buffer.Length > CoalesceLimit)
            {
                await stream.WriteAsync(sendBuffer.AsMemory(0, used), cancellationToken).ConfigureAwait(false);
                used = 0;
                if (buffer.Length > CoalesceLimit)
                {
                    await stream.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
                    continue;
                }
            }

            buffer.CopyTo(sendBuffer.AsMemory(used));
            used += buffer.Length;
        }

        if (used > 0)
        {
            await stream.WriteAsync(sendBuffer.AsMemory(0, used), cancellationToken).ConfigureAwait(false);
        }

        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public override async ValueTask ShutdownAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (stream is SslStream ssl)
            {
                await ssl.ShutdownAsync().WaitAsync(cancellationToken).ConfigureAwait(false); // close_notify (NBD.md 5.1)
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The peer is gone already: close_notify is a courtesy, and a failed one is not worth reporting. OpenSSL's
            // failure here is not an IOException (an SslException, "error - 5", when the peer closed first after DISC).
        }
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) == 0)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
        }
    }
}
