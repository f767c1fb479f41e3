using System.Buffers.Binary;
using System.Net.Sockets;
using Qed.Nbd.Protocol;

namespace Qed.Tests.Nbd.Transmission;

/// <summary>One reply as the client sees it: error and message, READ data reassembled from its chunks, BLOCK_STATUS extents per context.</summary>
internal sealed class WireReply
{
    public ulong Cookie { get; init; }

    public ushort Command { get; init; }

    public uint Error { get; set; }

    public string Message { get; set; } = "";

    /// <summary>READ data (holes filled with zeros); null when none came.</summary>
    public byte[]? Data { get; set; }

    /// <summary>Chunks as (type, offset, length) in arrival order, for READ replies.</summary>
    public List<(ushort Type, ulong Offset, long Length)> Chunks { get; } = [];

    public Dictionary<uint, NbdExtent[]> Status { get; } = [];

    public bool Structured { get; set; }
}

/// <summary>
/// The client end of a transmission-phase connection, speaking raw protocol with <see cref="NbdTransmission"/>'s readers
/// and writers: requests are sent as given, replies parsed strictly (cookies must be known, READ chunks inside the range
/// and not overlapping, DONE ends a reply). Every receive has a timeout.
/// </summary>
internal sealed class WireClient : IDisposable
{
    private readonly Dictionary<ulong, (NbdRequest Request, WireReply Reply, bool[] Covered)> _pending = [];
    private ulong _nextCookie = 0x1000;

    public WireClient(Socket socket, bool structured, TimeSpan timeout)
    {
        Socket = socket;
        Structured = structured;
        socket.ReceiveTimeout = (int)timeout.TotalMilliseconds;
        socket.SendTimeout = (int)timeout.TotalMilliseconds;
    }

    public Socket Socket { get; }

    public bool Structured { get; }

    public int Pending => _pending.Count;

    /// <summary>Sends a request (and its payload) and returns its cookie.</summary>
    public ulong Send(ushort command, ulong offset, uint length, ushort flags = 0, ReadOnlySpan<byte> payload = default, ulong? cookie = null)
    {
        ulong id = cookie ?? _nextCookie++;
        var request = new NbdRequest(flags, command, id, offset, length);
        var bytes = new byte[NbdTransmission.RequestSize + payload.Length];
        NbdTransmission.WriteRequest(bytes, request);
        payload.CopyTo(bytes.AsSpan(NbdTransmission.RequestSize));
        SendAll(bytes);
        if (command != NbdCommand.Disc)
        {
            _pending[id] = (request, new WireReply { Cookie = id, Command = command, Structured = Structured }, new bool[command == NbdCommand.Read ? Math.Min(length, 64u << 20) : 0]);
        }

        return id;
    }

    public void SendAll(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            bytes = bytes[Socket.Send(bytes)..];
        }
    }

    /// <summary>Reads messages until one reply is complete and returns it.</summary>
    public WireReply Receive()
    {
        while (true)
        {
            var header = new byte[4];
            ReceiveExactly(header);
            uint magic = BinaryPrimitives.ReadUInt32BigEndian(header);
            if (magic == NbdMagic.SimpleReply)
            {
                var rest = new byte[NbdTransmission.SimpleReplySize];
                header.CopyTo(rest, 0);
                ReceiveExactly(rest.AsSpan(4));
                Assert.True(NbdTransmission.TryReadSimpleReply(rest, out var simple, out string? error), error);
                Assert.True(_pending.Remove(simple.Cookie, out var entry), $"simple reply for unknown cookie 0x{simple.Cookie:x}");
                var reply = entry.Reply;
                reply.Error = simple.Error;
                if (entry.Request.Type == NbdCommand.Read)
                {
                    Assert.False(Structured && simple.Error == 0, "a structured READ must not get a simple success reply");
                    if (simple.Error == 0)
                    {
                        reply.Data = new byte[entry.Request.Length];
                        ReceiveExactly(reply.Data);
                    }
                }

                return reply;
            }

            Assert.Equal(NbdMagic.StructuredReply, magic);
            var chunkBytes = new byte[NbdTransmission.ChunkHeaderSize];
            header.CopyTo(chunkBytes, 0);
            ReceiveExactly(chunkBytes.AsSpan(4));
            Assert.True(NbdTransmission.TryReadChunkHeader(chunkBytes, 64u << 20, out var chunk, out string? chunkError), chunkError);
            var payload = new byte[chunk.Length];
            ReceiveExactly(payload);
            Assert.True(_pending.TryGetValue(chunk.Cookie, out var pending), $"chunk for unknown cookie 0x{chunk.Cookie:x}");
            Apply(pending.Request, pending.Reply, pending.Covered, chunk, payload);
            if ((chunk.Flags & NbdChunk.FlagDone) != 0)
            {
                _pending.Remove(chunk.Cookie);
                if (pending.Request.Type == NbdCommand.Read && pending.Reply.Error == 0)
                {
                    Assert.True(!pending.Covered.AsSpan().Contains(false), $"READ reply for cookie 0x{chunk.Cookie:x} does not cover the request");
                }

                return pending.Reply;
            }
        }
    }

    /// <summary>Sends one request and waits for its reply (nothing else may be pending).</summary>
    public WireReply Call(ushort command, ulong offset, uint length, ushort flags = 0, ReadOnlySpan<byte> payload = default)
    {
        ulong cookie = Send(command, offset, length, flags, payload);
        var reply = Receive();
        Assert.Equal(cookie, reply.Cookie);
        return reply;
    }

    /// <summary>True when the server closed the connection (EOF) within the timeout.</summary>
    public bool WaitForClose()
    {
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                if (Socket.Receive(buffer) == 0)
                {
                    return true;
                }
            }
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut || e.SocketErrorCode == SocketError.WouldBlock)
        {
            return false;
        }
    }

    public void ReceiveExactly(Span<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            int read = Socket.Receive(buffer);
            if (read == 0)
            {
                throw new EndOfStreamException($"the server closed the connection with {buffer.Length} bytes still expected");
            }

            buffer = buffer[read..];
        }
    }

    public void Dispose() => Socket.Dispose();

    private static void Apply(NbdRequest request, WireReply reply, bool[] covered, NbdChunkHeader chunk, byte[] payload)
    {
        reply.Structured = true;
        switch (chunk.Type)
        {
            case NbdChunk.TypeNone:
                Assert.True((chunk.Flags & NbdChunk.FlagDone) != 0, "NONE chunk without DONE");
                Assert.Empty(payload);
                break;
            case NbdChunk.TypeError:
                Assert.True(NbdTransmission.TryReadError(payload, out uint value, out string message, out string? error), error);
                reply.Error = value;
                reply.Message = message;
                Assert.True(payload.Length <= 1000, "error chunks must stay under qemu's 1000-byte limit");
                break;
            case NbdChunk.TypeOffsetData:
            case NbdChunk.TypeOffsetHole:
            {
                Assert.Equal(NbdCommand.Read, request.Type);
                ulong offset = BinaryPrimitives.ReadUInt64BigEndian(payload);
                long length;
                if (chunk.Type == NbdChunk.TypeOffsetHole)
                {
                    Assert.True(NbdTransmission.TryReadOffsetHole(payload, out _, out uint size, out string? holeError), holeError);
                    length = size;
                }
                else
                {
                    length = payload.Length - NbdTransmission.OffsetDataPrefixSize;
                    Assert.True(length > 0, "OFFSET_DATA without data");
                }

                Assert.True(offset >= request.Offset && offset + (ulong)length <= request.Offset + request.Length, $"chunk {offset}+{length} outside the request");
                reply.Data ??= new byte[request.Length];
                int at = (int)(offset - request.Offset);
                Assert.False(covered.AsSpan(at, (int)length).Contains(true), $"chunks overlap in {offset}+{length}");
                covered.AsSpan(at, (int)length).Fill(true);

                if (chunk.Type == NbdChunk.TypeOffsetData)
                {
                    payload.AsSpan(NbdTransmission.OffsetDataPrefixSize).CopyTo(reply.Data.AsSpan(at));
                }

                reply.Chunks.Add((chunk.Type, offset, length));
                break;
            }

            case NbdChunk.TypeBlockStatus:
            {
                Assert.Equal(NbdCommand.BlockStatus, request.Type);
                Assert.True(NbdTransmission.TryReadBlockStatus(payload, out uint context, out var extents, out string? statusError), statusError);
                Assert.False(reply.Status.ContainsKey(context), $"two chunks for context {context}");
                reply.Status[context] = extents;
                break;
            }

            default:
                Assert.Fail($"unexpected chunk type {chunk.Type}");
                break;
        }
    }

    /// <summary>Fails unless every byte of <paramref name="data"/> is <paramref name="value"/> (fast on large buffers).</summary>
    public static void AssertFilled(ReadOnlySpan<byte> data, byte value)
    {
        int at = data.IndexOfAnyExcept(value);
        Assert.True(at < 0, $"byte {at} is 0x{(at < 0 ? 0 : data[at]):x2}, not 0x{value:x2}");
    }
}
