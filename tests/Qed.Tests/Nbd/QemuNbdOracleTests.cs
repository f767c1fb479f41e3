using System.Diagnostics;
using System.Net.Sockets;
using Qed.Nbd.Protocol;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd;

/// <summary>
/// Our protocol readers and writers against a real peer: qemu-nbd serving a QED image over a Unix socket. The
/// handshake (greeting, client flags, INFO for the default export, ABORT) is built and parsed only with
/// <c>Qed.Nbd.Protocol</c>, so a layout both sides of our own tests got wrong the same way shows up here.
/// </summary>
public sealed class QemuNbdOracleTests(ITestOutputHelper output)
{
    private const long ImageSize = 64L * 1024 * 1024;
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(15);

    [Fact]
    public void Qemu_nbd_handshake_parses_with_our_readers()
    {
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        string socketPath = dir.File("nbd.sock");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, ImageSize.ToString(System.Globalization.CultureInfo.InvariantCulture));

        using var server = StartQemuNbd(socketPath, image);
        try
        {
            WaitForSocket(socketPath, server);
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.ReceiveTimeout = (int)s_timeout.TotalMilliseconds;
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));

            Span<byte> greeting = stackalloc byte[NbdHandshake.GreetingSize];
            ReceiveExactly(socket, greeting);
            Assert.True(NbdHandshake.TryReadGreeting(greeting, out ushort handshakeFlags, out string? error), error);
            Assert.Equal(NbdHandshake.GreetingFlags, handshakeFlags);

            var request = new byte[NbdHandshake.ClientFlagsSize + NbdHandshake.OptionHeaderSize + NbdHandshake.InfoRequestLength("", 1)];
            int at = NbdHandshake.WriteClientFlags(request, NbdHandshakeFlags.ClientFixedNewstyle | NbdHandshakeFlags.ClientNoZeroes);
            at += NbdHandshake.WriteOptionHeader(request.AsSpan(at), NbdOption.Info, (uint)NbdHandshake.InfoRequestLength("", 1));
            at += NbdHandshake.WriteInfoRequest(request.AsSpan(at), "", [NbdInfo.BlockSize]);
            Assert.Equal(request.Length, at);
            socket.Send(request);

            ulong? size = null;
            ushort flags = 0;
            NbdBlockSize? blockSize = null;
            var seen = new List<string>();
            while (true)
            {
                (NbdOptionReplyHeader header, byte[] payload) = ReceiveOptionReply(socket);
                Assert.Equal(NbdOption.Info, header.Option);
                if (header.ReplyType == NbdOptionReply.Ack)
                {
                    seen.Add("ACK");
                    break;
                }
                Assert.Equal(NbdOptionReply.Info, header.ReplyType);
                Assert.True(NbdHandshake.TryReadInfoType(payload, out ushort infoType, out error), error);
                seen.Add($"INFO {infoType} ({payload.Length} bytes)");
                if (infoType == NbdInfo.Export)
                {
                    Assert.True(NbdHandshake.TryReadInfoExport(payload, out ulong exportSize, out flags, out error), error);
                    size = exportSize;
                }
                else if (infoType == NbdInfo.BlockSize)
                {
                    Assert.True(NbdHandshake.TryReadInfoBlockSize(payload, out var sizes, out error), error);
                    blockSize = sizes;
                }
            }
            output.WriteLine($"qemu-nbd replied: {string.Join(", ", seen)}; size {size}, flags 0x{flags:x4}, block size {blockSize}");

            Assert.Equal((ulong)ImageSize, size);
            Assert.Equal(NbdTransmissionFlags.HasFlags, flags & NbdTransmissionFlags.HasFlags);
            Assert.Equal(NbdTransmissionFlags.SendFlush, flags & NbdTransmissionFlags.SendFlush);
            Assert.Equal(0, flags & NbdTransmissionFlags.ReadOnly);
            Assert.NotNull(blockSize); // qemu-nbd always sends BLOCK_SIZE (NBD.md 1.7)

            var abort = new byte[NbdHandshake.OptionHeaderSize];
            NbdHandshake.WriteOptionHeader(abort, NbdOption.Abort, 0);
            socket.Send(abort);
            (NbdOptionReplyHeader ack, byte[] ackPayload) = ReceiveOptionReply(socket);
            Assert.Equal(new NbdOptionReplyHeader(NbdOption.Abort, NbdOptionReply.Ack, 0), ack);
            Assert.Empty(ackPayload);
        }
        finally
        {
            if (!server.HasExited)
            {
                server.Kill();
            }
            server.WaitForExit();
        }
    }

    [Fact]
    public void Qemu_nbd_transmission_parses_with_our_readers()
    {
        // Structured replies, GO, then a READ over a hole and data, a FLUSH and a READ past the end: our request
        // writer and chunk/simple reply readers against qemu-nbd's answers.
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        string socketPath = dir.File("nbd.sock");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, ImageSize.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Tools.QemuIo(dir.Path, "qed", image, "write -P 0x61 64k 64k");

        using var server = StartQemuNbd(socketPath, image);
        try
        {
            WaitForSocket(socketPath, server);
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.ReceiveTimeout = (int)s_timeout.TotalMilliseconds;
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            ReceiveExactly(socket, new byte[NbdHandshake.GreetingSize]);

            var buffer = new byte[256];
            int at = NbdHandshake.WriteClientFlags(buffer, NbdHandshakeFlags.ClientFixedNewstyle | NbdHandshakeFlags.ClientNoZeroes);
            at += NbdHandshake.WriteOptionHeader(buffer.AsSpan(at), NbdOption.StructuredReply, 0);
            socket.Send(buffer.AsSpan(0, at));
            Assert.Equal(NbdOptionReply.Ack, ReceiveOptionReply(socket).Header.ReplyType);

            at = NbdHandshake.WriteOptionHeader(buffer, NbdOption.Go, (uint)NbdHandshake.InfoRequestLength("", 0));
            at += NbdHandshake.WriteInfoRequest(buffer.AsSpan(at), "", []);
            socket.Send(buffer.AsSpan(0, at));
            while (ReceiveOptionReply(socket).Header.ReplyType != NbdOptionReply.Ack)
            {
            }

            const uint ReadLength = 128 * 1024;
            socket.Send(buffer.AsSpan(0, NbdTransmission.WriteRequest(buffer, new NbdRequest(0, NbdCommand.Read, 0x1111, 0, ReadLength))));
            var chunks = new List<string>();
            var data = new byte[ReadLength];
            data.AsSpan().Fill(0xff); // holes must be reported, not left as whatever was in the buffer
            NbdChunkHeader chunk;
            do
            {
                chunk = ReceiveChunk(socket, out byte[] payload);
                Assert.Equal(0x1111UL, chunk.Cookie);
                chunks.Add($"type {chunk.Type} len {chunk.Length} flags {chunk.Flags}");
                if (chunk.Type == NbdChunk.TypeOffsetHole)
                {
                    Assert.True(NbdTransmission.TryReadOffsetHole(payload, out ulong offset, out uint size, out string? error), error);
                    data.AsSpan((int)offset, (int)size).Clear();
                }
                else if (chunk.Type == NbdChunk.TypeOffsetData)
                {
                    ulong offset = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(payload);
                    payload.AsSpan(NbdTransmission.OffsetDataPrefixSize).CopyTo(data.AsSpan((int)offset));
                }
                else
                {
                    Assert.Equal(NbdChunk.TypeNone, chunk.Type);
                }
            }
            while ((chunk.Flags & NbdChunk.FlagDone) == 0);
            output.WriteLine($"READ 128 KiB: {string.Join("; ", chunks)}");
            Assert.All(data.AsSpan(0, 64 * 1024).ToArray(), b => Assert.Equal(0, b));
            Assert.All(data.AsSpan(64 * 1024).ToArray(), b => Assert.Equal(0x61, b));

            socket.Send(buffer.AsSpan(0, NbdTransmission.WriteRequest(buffer, new NbdRequest(0, NbdCommand.Flush, 0x2222, 0, 0))));
            ReceiveExactly(socket, buffer.AsSpan(0, NbdTransmission.SimpleReplySize));
            Assert.True(NbdTransmission.TryReadSimpleReply(buffer, out var flush, out string? flushError), flushError);
            Assert.Equal(new NbdSimpleReply(NbdError.None, 0x2222), flush);

            socket.Send(buffer.AsSpan(0, NbdTransmission.WriteRequest(buffer, new NbdRequest(0, NbdCommand.Read, 0x3333, (ulong)ImageSize, 4096))));
            chunk = ReceiveChunk(socket, out byte[] errorPayload);
            Assert.Equal(NbdChunk.TypeError, chunk.Type);
            Assert.True(NbdTransmission.TryReadError(errorPayload, out uint value, out string message, out string? chunkError), chunkError);
            output.WriteLine($"READ past the end: error {value} \"{message}\"");
            Assert.Equal(NbdError.Inval, value);

            socket.Send(buffer.AsSpan(0, NbdTransmission.WriteRequest(buffer, new NbdRequest(0, NbdCommand.Disc, 0x4444, 0, 0))));
        }
        finally
        {
            if (!server.HasExited)
            {
                server.Kill();
            }
            server.WaitForExit();
        }
    }

    private static Process StartQemuNbd(string socketPath, string image)
    {
        var info = new ProcessStartInfo("qemu-nbd") { UseShellExecute = false, RedirectStandardError = true };
        foreach (string argument in new[] { "-k", socketPath, "-f", "qed", image })
        {
            info.ArgumentList.Add(argument);
        }
        return Process.Start(info) ?? throw new InvalidOperationException("could not start qemu-nbd");
    }

    private static NbdChunkHeader ReceiveChunk(Socket socket, out byte[] payload)
    {
        var headerBytes = new byte[NbdTransmission.ChunkHeaderSize];
        ReceiveExactly(socket, headerBytes);
        Assert.True(NbdTransmission.TryReadChunkHeader(headerBytes, 1024 * 1024, out var header, out string? error), error);
        payload = new byte[header.Length];
        ReceiveExactly(socket, payload);
        return header;
    }

    private static (NbdOptionReplyHeader Header, byte[] Payload) ReceiveOptionReply(Socket socket)
    {
        var headerBytes = new byte[NbdHandshake.OptionReplyHeaderSize];
        ReceiveExactly(socket, headerBytes);
        // The length is checked before the payload buffer is sized from it.
        Assert.True(NbdHandshake.TryReadOptionReplyHeader(headerBytes, NbdLimits.DefaultMaxOptionLength, out var header, out string? error), error);
        var payload = new byte[header.Length];
        ReceiveExactly(socket, payload);
        return (header, payload);
    }

    private static void ReceiveExactly(Socket socket, Span<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            int read = socket.Receive(buffer);
            if (read == 0)
            {
                throw new InvalidOperationException($"qemu-nbd closed the connection with {buffer.Length} bytes still expected");
            }
            buffer = buffer[read..];
        }
    }

    private static void WaitForSocket(string path, Process server) => UnixSocketListening.WaitFor(path, server, s_timeout);
}
