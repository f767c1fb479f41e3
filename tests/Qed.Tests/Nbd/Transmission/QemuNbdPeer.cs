using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Qed.Nbd.Protocol;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Transmission;

/// <summary>
/// qemu-nbd serving an image read-only over a unix socket, connected with structured replies and the metadata contexts
/// asked for: the oracle for block status. The handshake is spelled out here with the protocol writers (SET_META_CONTEXT
/// by hand), so it depends on nothing of our server.
/// </summary>
internal sealed class QemuNbdPeer : IDisposable
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(15);
    private readonly Process _process;

    private QemuNbdPeer(Process process, WireClient client, Dictionary<string, uint> contexts)
    {
        _process = process;
        Client = client;
        Contexts = contexts;
    }

    public WireClient Client { get; }

    /// <summary>Context ids qemu-nbd chose, by name.</summary>
    public Dictionary<string, uint> Contexts { get; }

    public static QemuNbdPeer Start(string directory, string image, params string[] contexts)
    {
        string socketPath = Path.Combine(directory, "qemu-" + Guid.NewGuid().ToString("N")[..8] + ".sock");
        var info = new ProcessStartInfo("qemu-nbd") { UseShellExecute = false, RedirectStandardError = true };
        var arguments = new List<string> { "-r", "-f", "qed", "-k", socketPath };
        if (contexts.Contains("qemu:allocation-depth"))
        {
            arguments.Add("-A");
        }

        arguments.Add(image);
        arguments.ForEach(info.ArgumentList.Add);
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start qemu-nbd");
        try
        {
            UnixSocketListening.WaitFor(socketPath, process, s_timeout);

            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            var client = new WireClient(socket, structured: true, s_timeout);
            var chosen = Handshake(client, contexts);
            return new QemuNbdPeer(process, client, chosen);
        }
        catch
        {
            process.Kill();
            process.WaitForExit();
            process.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        try
        {
            Client.Send(NbdCommand.Disc, 0, 0);
        }
        catch (SocketException)
        {
        }

        Client.Dispose();
        if (!_process.WaitForExit(5000))
        {
            _process.Kill();
            _process.WaitForExit();
        }

        _process.Dispose();
    }

    private static Dictionary<string, uint> Handshake(WireClient client, string[] contexts)
    {
        client.ReceiveExactly(new byte[NbdHandshake.GreetingSize]);
        var buffer = new byte[4096];
        int at = NbdHandshake.WriteClientFlags(buffer, NbdHandshakeFlags.ClientFixedNewstyle | NbdHandshakeFlags.ClientNoZeroes);
        at += NbdHandshake.WriteOptionHeader(buffer.AsSpan(at), NbdOption.StructuredReply, 0);
        client.SendAll(buffer.AsSpan(0, at));
        Assert.Equal(NbdOptionReply.Ack, ReceiveOptionReply(client).Header.ReplyType);

        // SET_META_CONTEXT: u32 export name length, name, u32 query count, then u32 length + query each.
        int length = 4 + 4 + contexts.Sum(c => 4 + Encoding.UTF8.GetByteCount(c));
        at = NbdHandshake.WriteOptionHeader(buffer, NbdOption.SetMetaContext, (uint)length);
        BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(at), 0);
        BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(at + 4), (uint)contexts.Length);
        at += 8;
        foreach (string context in contexts)
        {
            int bytes = Encoding.UTF8.GetBytes(context, buffer.AsSpan(at + 4));
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(at), (uint)bytes);
            at += 4 + bytes;
        }

        client.SendAll(buffer.AsSpan(0, at));
        var chosen = new Dictionary<string, uint>();
        while (true)
        {
            var (header, payload) = ReceiveOptionReply(client);
            if (header.ReplyType == NbdOptionReply.Ack)
            {
                break;
            }

            Assert.Equal(NbdOptionReply.MetaContext, header.ReplyType);
            chosen[Encoding.UTF8.GetString(payload.AsSpan(4))] = BinaryPrimitives.ReadUInt32BigEndian(payload);
        }

        at = NbdHandshake.WriteOptionHeader(buffer, NbdOption.Go, (uint)NbdHandshake.InfoRequestLength("", 0));
        at += NbdHandshake.WriteInfoRequest(buffer.AsSpan(at), "", []);
        client.SendAll(buffer.AsSpan(0, at));
        while (ReceiveOptionReply(client).Header.ReplyType != NbdOptionReply.Ack)
        {
        }

        return chosen;
    }

    private static (NbdOptionReplyHeader Header, byte[] Payload) ReceiveOptionReply(WireClient client)
    {
        var headerBytes = new byte[NbdHandshake.OptionReplyHeaderSize];
        client.ReceiveExactly(headerBytes);
        Assert.True(NbdHandshake.TryReadOptionReplyHeader(headerBytes, NbdLimits.DefaultMaxOptionLength, out var header, out string? error), error);
        Assert.False(NbdOptionReply.IsError(header.ReplyType), $"qemu-nbd refused option {header.Option}: 0x{header.ReplyType:x}");
        var payload = new byte[header.Length];
        client.ReceiveExactly(payload);
        return (header, payload);
    }
}
