using Qed.Nbd.Protocol;
using Qed.Nbd.Transport;

namespace Qed.Nbd.Server;

/// <summary>
/// Option replies of one option collected in a buffer and sent as one write, so that a LIST or an INFO with several
/// items costs one system call. Every payload length is known before its header is written.
/// </summary>
internal sealed class NegotiationReplies
{
    private byte[] buffer = new byte[1024];
    private int used;

    /// <summary>Appends a reply header and returns the span its payload of exactly <paramref name="payloadLength"/> bytes goes into.</summary>
    public Span<byte> Add(uint option, uint replyType, int payloadLength)
    {
        int needed = used + NbdHandshake.OptionReplyHeaderSize + payloadLength;
        if (needed > buffer.Length)
        {
            Array.Resize(ref buffer, Math.Max(needed, buffer.Length * 2));
        }

        used += NbdHandshake.WriteOptionReplyHeader(buffer.AsSpan(used), option, replyType, (uint)payloadLength);
        var payload = buffer.AsSpan(used, payloadLength);
        used += payloadLength;
        return payload;
    }

    public void Ack(uint option) => Add(option, NbdOptionReply.Ack, 0);

    /// <summary>An error reply with a short message (qemu-style), cut on a character boundary if it is too long.</summary>
    public void Error(uint option, uint errorType, string message)
    {
        var payload = Add(option, errorType, NbdHandshake.ErrorMessageLength(message));
        NbdHandshake.WriteErrorMessage(payload, message);
    }

    /// <summary>Appends raw bytes that are not an option reply (the EXPORT_NAME answer).</summary>
    public Span<byte> AddRaw(int length)
    {
        if (used + length > buffer.Length)
        {
            Array.Resize(ref buffer, Math.Max(used + length, buffer.Length * 2));
        }

        var span = buffer.AsSpan(used, length);
        used += length;
        return span;
    }

    /// <summary>Sends what was collected, as one unit, and empties the buffer.</summary>
    public async ValueTask SendAsync(NbdTransport transport, CancellationToken cancellationToken)
    {
        int length = used;
        used = 0;
        if (length > 0)
        {
            await transport.WriteAsync(buffer.AsMemory(0, length), ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
        }
    }
}
