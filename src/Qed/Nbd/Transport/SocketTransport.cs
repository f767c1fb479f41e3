using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Qed.Nbd.Transport;

/// <summary>
/// A plain (unencrypted) socket, unix or TCP. Writes are gather-writes of the caller's buffers (one sendmsg per reply).
/// </summary>
internal sealed class SocketTransport : NbdTransport
{
    private readonly Socket socket;
    private readonly List<ArraySegment<byte>> sendList = new(4);
    private int disposed;

    public SocketTransport(Socket socket)
    {
        this.socket = socket;
        if (socket.ProtocolType == ProtocolType.Tcp)
        {
            socket.NoDelay = true; // NBD.md 8.4: no Nagle/cork stalls between a request and its reply
        }
    }

    /// <summary>The socket under the transport, for STARTTLS (which wraps it in an <see cref="System.Net.Security.SslStream"/>).</summary>
    public Socket Socket => socket;

    protected override ValueTask<int> ReceiveAsync(Memory<byte> destination, CancellationToken cancellationToken) =>
        socket.ReceiveAsync(destination, SocketFlags.None, cancellationToken);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> header, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        if (payload.IsEmpty)
        {
            return SendAllAsync(header, cancellationToken);
        }

        sendList.Clear();
        sendList.Add(Segment(header));
        sendList.Add(Segment(payload));
        return SendListAsync(header.Length + payload.Length, cancellationToken);
    }

    public override ValueTask WriteAsync(IReadOnlyList<ReadOnlyMemory<byte>> buffers, CancellationToken cancellationToken)
    {
        sendList.Clear();
        int total = 0;
        foreach (var buffer in buffers)
        {
            if (!buffer.IsEmpty)
            {
                sendList.Add(Segment(buffer));
                total += buffer.Length;
            }
        }

        return SendListAsync(total, cancellationToken);
    }

    public override ValueTask ShutdownAsync(CancellationToken cancellationToken)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // The peer is gone already: nothing left to end politely.
        }

        return ValueTask.CompletedTask;
    }

    public override ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) == 0)
        {
            socket.Dispose();
        }

        return ValueTask.CompletedTask;
    }

    private async ValueTask SendAllAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (!data.IsEmpty)
        {
            int sent = await socket.SendAsync(data, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            data = data[sent..];
        }
    }

    // Socket.SendAsync(IList<ArraySegment>) is one sendmsg; a short send (full socket buffer) continues with the rest.
    private async ValueTask SendListAsync(int total, CancellationToken cancellationToken)
    {
        int sent = await socket.SendAsync(sendList, SocketFlags.None).WaitAsync(cancellationToken).ConfigureAwait(false);
        while (sent < total)
        {
            DropSent(sent);
            total -= sent;
            sent = await socket.SendAsync(sendList, SocketFlags.None).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private void DropSent(int sent)
    {
        while (sent > 0)
        {
            var first = sendList[0];
            if (sent >= first.Count)
            {
                sent -= first.Count;
                sendList.RemoveAt(0);
            }
            else
            {
                sendList[0] = first.Slice(sent);
                sent = 0;
            }
        }
    }

    private static ArraySegment<byte> Segment(ReadOnlyMemory<byte> memory) =>
        MemoryMarshal.TryGetArray(memory, out var segment)
            ? segment
            : new ArraySegment<byte>(memory.ToArray()); // only native or unmanaged memory lands here; the server never passes it
}
