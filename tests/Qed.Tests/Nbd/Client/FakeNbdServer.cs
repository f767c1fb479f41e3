using System.Net.Sockets;
using Qed.Nbd.Protocol;

namespace Qed.Tests.Nbd.Client;

/// <summary>
/// A scripted NBD server for one connection on a unix socket, to make our client meet a server that breaks the rules.
/// The script gets the connection and speaks raw bytes (with helpers for a well-behaved handshake and for replies).
/// </summary>
internal sealed class FakeNbdServer : IAsyncDisposable
{
    public const long ExportSize = 1024 * 1024;
    public const uint ContextId = 7;

    private readonly Socket _listener;
    private readonly Task _serving;
    private readonly CancellationTokenSource _stop = new();

    private FakeNbdServer(string socketPath, Func<FakeNbdConnection, Task> script)
    {
        SocketPath = socketPath;
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        _listener.Listen(4);
        _serving = Task.Run(async () =>
        {
            using var socket = await _listener.AcceptAsync(_stop.Token);
            await using var connection = new FakeNbdConnection(new NetworkStream(socket, ownsSocket: false), _stop.Token);
            try
            {
                await script(connection);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or EndOfStreamException)
            {
                // The client hung up on a server that misbehaved: what the tests expect.
            }
        });
    }

    public string SocketPath { get; }

    public static FakeNbdServer Start(string directory, Func<FakeNbdConnection, Task> script) =>
        new(Path.Combine(directory, "fake-" + Guid.NewGuid().ToString("N")[..8] + ".sock"), script);

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        try
        {
            await _serving.WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        _stop.Dispose();
        File.Delete(SocketPath);
    }
}

/// <summary>One connection of <see cref="FakeNbdServer"/>.</summary>
internal sealed class FakeNbdConnection(Stream stream, CancellationToken stop) : IAsyncDisposable
{
    public async Task<byte[]> ReadAsync(int count)
    {
        var buffer = new byte[count];
        await stream.ReadExactlyAsync(buffer, stop);
        return buffer;
    }

    public async Task WriteAsync(params byte[][] parts)
    {
        foreach (var part in parts)
        {
            await stream.WriteAsync(part, stop);
        }
        await stream.FlushAsync(stop);
    }

    /// <summary>Greeting, client flags, then options answered as a good server does (structured replies, base:allocation as <see cref="FakeNbdServer.ContextId"/>, GO) until GO's ACK.</summary>
    public async Task HandshakeAsync(ushort transmissionFlags = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush)
    {
        var greeting = new byte[NbdHandshake.GreetingSize];
        NbdHandshake.WriteGreeting(greeting, NbdHandshake.GreetingFlags);
        await WriteAsync(greeting);
        await ReadAsync(NbdHandshake.ClientFlagsSize);
        while (true)
        {
            var (option, _) = await ReadOptionAsync();
            switch (option)
            {
                case NbdOption.StructuredReply:
                    await OptionReplyAsync(option, NbdOptionReply.Ack, []);
                    break;
                case NbdOption.SetMetaContext:
                    var context = new byte[4 + "base:allocation".Length];
                    System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(context, FakeNbdServer.ContextId);
                    "base:allocation"u8.CopyTo(context.AsSpan(4));
                    await OptionReplyAsync(option, NbdOptionReply.MetaContext, context);
                    await OptionReplyAsync(option, NbdOptionReply.Ack, []);
                    break;
                case NbdOption.Go:
                    var export = new byte[NbdHandshake.InfoExportSize];
                    NbdHandshake.WriteInfoExport(export, FakeNbdServer.ExportSize, transmissionFlags);
                    await OptionReplyAsync(option, NbdOptionReply.Info, export);
                    await OptionReplyAsync(option, NbdOptionReply.Ack, []);
                    return;
                default:
                    await OptionReplyAsync(option, NbdOptionReply.ErrUnsup, []);
                    break;
            }
        }
    }

    public async Task<(uint Option, byte[] Payload)> ReadOptionAsync()
    {
        var header = await ReadAsync(NbdHandshake.OptionHeaderSize);
        Assert.True(NbdHandshake.TryReadOptionHeader(header, 65536, out var parsed, out string? error), error);
        return (parsed.Option, await ReadAsync((int)parsed.Length));
    }

    public Task OptionReplyAsync(uint option, uint type, byte[] payload)
    {
        var header = new byte[NbdHandshake.OptionReplyHeaderSize];
        NbdHandshake.WriteOptionReplyHeader(header, option, type, (uint)payload.Length);
        return WriteAsync(header, payload);
    }

    public async Task<NbdRequest> ReadRequestAsync()
    {
        var header = await ReadAsync(NbdTransmission.RequestSize);
        Assert.True(NbdTransmission.TryReadRequest(header, out var request, out string? error), error);
        if (request.Type == NbdCommand.Write)
        {
            await ReadAsync((int)request.Length);
        }
        return request;
    }

    public static byte[] Chunk(ushort flags, ushort type, ulong cookie, uint length)
    {
        var header = new byte[NbdTransmission.ChunkHeaderSize];
        NbdTransmission.WriteChunkHeader(header, new NbdChunkHeader(flags, type, cookie, length));
        return header;
    }

    public static byte[] Simple(uint error, ulong cookie)
    {
        var header = new byte[NbdTransmission.SimpleReplySize];
        NbdTransmission.WriteSimpleReply(header, error, cookie);
        return header;
    }

    public static byte[] U64(ulong value)
    {
        var bytes = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(bytes, value);
        return bytes;
    }

    public Task DataAsync(ushort flags, ulong cookie, ulong offset, int length) =>
        WriteAsync(Chunk(flags, NbdChunk.TypeOffsetData, cookie, (uint)(8 + length)), U64(offset), new byte[length]);

    public Task HoleAsync(ushort flags, ulong cookie, ulong offset, uint size)
    {
        var payload = new byte[NbdTransmission.OffsetHoleSize];
        NbdTransmission.WriteOffsetHole(payload, offset, size);
        return WriteAsync(Chunk(flags, NbdChunk.TypeOffsetHole, cookie, (uint)payload.Length), payload);
    }

    /// <summary>Reads nothing more until the server is stopped (a server that stopped reading).</summary>
    public Task IdleAsync() => Task.Delay(Timeout.Infinite, stop);

    /// <summary>Waits until the client closes the connection (or the server is stopped).</summary>
    public async Task DrainAsync()
    {
        var buffer = new byte[4096];
        while (await stream.ReadAsync(buffer, stop) > 0)
        {
        }
    }

    public ValueTask DisposeAsync() => stream.DisposeAsync();
}
