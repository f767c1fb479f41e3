using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Qed.Nbd.Protocol;

namespace Qed.Tests.Nbd.Hostile;

/// <summary>The server closed or reset the connection: what a drop looks like from the client.</summary>
internal sealed class ProbeDroppedException(string how) : Exception(how);

/// <summary>Nothing came within the receive timeout.</summary>
internal sealed class ProbeSilentException(string what) : Exception(what);

/// <summary>
/// One raw NBD connection of the prober: blocking socket with short timeouts, bytes built with the protocol writers of
/// <c>Qed.Nbd.Protocol</c> where the message is well-formed and by hand where it is not. Every receive either returns
/// what was asked, or throws <see cref="ProbeDroppedException"/> (EOF, reset) or <see cref="ProbeSilentException"/>
/// (timeout), so a case never hangs.
/// </summary>
internal sealed class HostileConnection : IDisposable
{
    /// <summary>Default wait for a reply: generous for a loaded 2-core machine, short enough for a fast prober.</summary>
    public static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(3);

    private readonly Socket socket;
    private readonly Dictionary<ulong, (ulong Offset, uint Length)> reads = [];
    private readonly Dictionary<ulong, ReplyState> pending = [];
    private ulong nextCookie = 1;

    private HostileConnection(Socket socket)
    {
        this.socket = socket;
        Timeout = ReplyTimeout;
    }

    /// <summary>The wait of each receive.</summary>
    public TimeSpan Timeout
    {
        get => TimeSpan.FromMilliseconds(socket.ReceiveTimeout);
        set
        {
            socket.ReceiveTimeout = (int)value.TotalMilliseconds;
            socket.SendTimeout = (int)value.TotalMilliseconds;
        }
    }

    /// <summary>The socket, for cases that need it raw (non-blocking floods).</summary>
    public Socket Socket => socket;

    /// <summary>Connects to <paramref name="target"/> (unix socket or 127.0.0.1:port) within <paramref name="timeout"/>.</summary>
    public static HostileConnection Connect(HostileTarget target, TimeSpan? timeout = null)
    {
        Socket socket = target.SocketPath is not null
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            EndPoint endPoint = target.SocketPath is not null ? new UnixDomainSocketEndPoint(target.SocketPath) : new IPEndPoint(IPAddress.Loopback, target.Port);
            using var cancel = new CancellationTokenSource(timeout ?? ReplyTimeout);
            socket.ConnectAsync(endPoint, cancel.Token).AsTask().GetAwaiter().GetResult();
            if (socket.AddressFamily == AddressFamily.InterNetwork)
            {
                socket.NoDelay = true;
            }
            return new HostileConnection(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Sends everything; a reset or closed peer is a drop.</summary>
    public void Send(ReadOnlySpan<byte> bytes)
    {
        try
        {
            while (bytes.Length > 0)
            {
                int sent = socket.Send(bytes);
                bytes = bytes[sent..];
            }
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown or SocketError.ConnectionAborted or SocketError.NotConnected)
        {
            throw new ProbeDroppedException($"send failed: {e.SocketErrorCode}");
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
        {
            throw new ProbeSilentException("the server stopped reading");
        }
    }

    /// <summary>Receives exactly <paramref name="count"/> bytes.</summary>
    public byte[] Receive(int count, string what)
    {
        var buffer = new byte[count];
        int at = 0;
        try
        {
            while (at < count)
            {
                int received = socket.Receive(buffer, at, count - at, SocketFlags.None);
                if (received == 0)
                {
                    throw new ProbeDroppedException(at == 0 ? "closed" : $"closed after {at} of {count} bytes of {what}");
                }
                at += received;
            }
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
        {
            throw new ProbeSilentException($"no {what} within {Timeout.TotalSeconds:0.#} s");
        }
        catch (SocketException e)
        {
            throw new ProbeDroppedException(e.SocketErrorCode == SocketError.ConnectionReset ? "reset" : e.SocketErrorCode.ToString());
        }
        return buffer;
    }

    /// <summary>Reads the 18-byte greeting and sends <paramref name="clientFlags"/>.</summary>
    public void Hello(uint clientFlags = NbdHandshakeFlags.ClientFixedNewstyle | NbdHandshakeFlags.ClientNoZeroes)
    {
        byte[] greeting = Receive(NbdHandshake.GreetingSize, "greeting");
        if (!NbdHandshake.TryReadGreeting(greeting, out _, out string? error))
        {
            throw new InvalidOperationException($"bad greeting: {error}");
        }
        var flags = new byte[NbdHandshake.ClientFlagsSize];
        NbdHandshake.WriteClientFlags(flags, clientFlags);
        Send(flags);
    }

    /// <summary>The bytes of an option request (header with <paramref name="magic"/>, then the payload).</summary>
    public static byte[] OptionBytes(uint option, ReadOnlySpan<byte> payload, ulong magic = NbdMagic.IHaveOpt, uint? declaredLength = null)
    {
        var bytes = new byte[NbdHandshake.OptionHeaderSize + payload.Length];
        NbdHandshake.WriteOptionHeader(bytes, option, declaredLength ?? (uint)payload.Length);
        BinaryPrimitives.WriteUInt64BigEndian(bytes, magic);
        payload.CopyTo(bytes.AsSpan(NbdHandshake.OptionHeaderSize));
        return bytes;
    }

    /// <summary>Sends an option and returns the names of the replies up to the final one (ACK or an error).</summary>
    public List<string> Option(uint option, ReadOnlySpan<byte> payload = default)
    {
        Send(OptionBytes(option, payload));
        return OptionReplies();
    }

    /// <summary>Reads option replies until a final one (anything but SERVER, INFO, META_CONTEXT).</summary>
    public List<string> OptionReplies()
    {
        var names = new List<string>();
        while (true)
        {
            byte[] header = Receive(NbdHandshake.OptionReplyHeaderSize, "option reply");
            if (!NbdHandshake.TryReadOptionReplyHeader(header, 1 << 20, out var reply, out string? error))
            {
                throw new InvalidOperationException($"bad option reply: {error}");
            }
            Receive((int)reply.Length, "option reply payload");
            names.Add(OptionReplyName(reply.ReplyType));
            if (reply.ReplyType is not (NbdOptionReply.Server or NbdOptionReply.Info or NbdOptionReply.MetaContext))
            {
                return names;
            }
        }
    }

    /// <summary>The payload of GO / INFO: export name and info requests.</summary>
    public static byte[] InfoPayload(string name, params ushort[] infos)
    {
        var payload = new byte[NbdHandshake.InfoRequestLength(name, infos.Length)];
        NbdHandshake.WriteInfoRequest(payload, name, infos);
        return payload;
    }

    /// <summary>The payload of SET_/LIST_META_CONTEXT: export name, then the queries.</summary>
    public static byte[] MetaContextPayload(string export, params string[] queries)
    {
        var bytes = new List<byte>();
        void Add(string text)
        {
            byte[] utf8 = Encoding.UTF8.GetBytes(text);
            var length = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(length, (uint)utf8.Length);
            bytes.AddRange(length);
            bytes.AddRange(utf8);
        }
        Add(export);
        var count = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(count, (uint)queries.Length);
        bytes.AddRange(count);
        foreach (string query in queries)
        {
            Add(query);
        }
        return [.. bytes];
    }

    /// <summary>
    /// Completes a normal handshake into transmission: structured replies and base:allocation unless told otherwise,
    /// then GO. Throws unless each step is acknowledged.
    /// </summary>
    public void Go(string export, bool structured = true, bool metaContext = true)
    {
        Hello();
        if (structured)
        {
            Expect(Option(NbdOption.StructuredReply), "STRUCTURED_REPLY");
            if (metaContext)
            {
                Expect(Option(NbdOption.SetMetaContext, MetaContextPayload(export, "base:allocation")), "SET_META_CONTEXT");
            }
        }
        Expect(Option(NbdOption.Go, InfoPayload(export)), "GO");
    }

    private static void Expect(List<string> replies, string what)
    {
        if (replies[^1] != "ACK")
        {
            throw new InvalidOperationException($"{what} answered {string.Join(",", replies)}");
        }
    }

    /// <summary>The 28 bytes of a request header, magic as given.</summary>
    public static byte[] RequestBytes(ushort type, ushort flags, ulong cookie, ulong offset, uint length, uint magic = NbdMagic.Request)
    {
        var bytes = new byte[NbdTransmission.RequestSize];
        NbdTransmission.WriteRequest(bytes, new NbdRequest(flags, type, cookie, offset, length));
        BinaryPrimitives.WriteUInt32BigEndian(bytes, magic);
        return bytes;
    }

    /// <summary>Sends a request (with <paramref name="payload"/> after it) without waiting; returns its cookie.</summary>
    public ulong SendRequest(ushort type, ulong offset, uint length, ushort flags = 0, ReadOnlySpan<byte> payload = default, uint magic = NbdMagic.Request)
    {
        ulong cookie = nextCookie++;
        if (type == NbdCommand.Read)
        {
            reads[cookie] = (offset, length);
        }
        Send(RequestBytes(type, flags, cookie, offset, length, magic));
        if (!payload.IsEmpty)
        {
            Send(payload);
        }
        return cookie;
    }

    /// <summary>Sends a request and waits for its whole answer.</summary>
    public Reply Request(ushort type, ulong offset, uint length, ushort flags = 0, ReadOnlySpan<byte> payload = default) =>
        Await(SendRequest(type, offset, length, flags, payload));

    /// <summary>Reads replies (in whatever order they come) until <paramref name="cookie"/>'s is complete.</summary>
    public Reply Await(ulong cookie)
    {
        while (true)
        {
            if (pending.TryGetValue(cookie, out var state) && state.Done)
            {
                pending.Remove(cookie);
                return state.ToReply();
            }
            ReadOneMessage();
        }
    }

    /// <summary>"alive" when a READ of 512 bytes at 0 still returns the pattern on this connection, else how it ended.</summary>
    public string Alive()
    {
        try
        {
            var reply = Request(NbdCommand.Read, 0, 512);
            return reply.Error != 0 ? $"alive but READ failed {ErrorName(reply.Error)}"
                : reply.Data is { } data && data.All(b => b == HostileTarget.Pattern) ? "alive" : "alive but READ returned wrong data";
        }
        catch (ProbeDroppedException e)
        {
            return $"then dropped ({e.Message})";
        }
        catch (ProbeSilentException e)
        {
            return $"then silent ({e.Message})";
        }
    }

    /// <summary>The answer to one request: an errno (0 for success) and, for READ, the data assembled from its chunks.</summary>
    internal sealed record Reply(uint Error, byte[]? Data, string Shape);

    private sealed class ReplyState((ulong Offset, uint Length) read)
    {
        public ulong RequestOffset { get; } = read.Offset;
        public byte[]? Data { get; } = read.Length > 0 && read.Length <= (64u << 20) ? new byte[read.Length] : null; // the prober asks for at most 64 MiB expecting data
        public uint Error { get; set; }
        public bool Done { get; set; }
        public List<string> Shape { get; } = [];

        public Reply ToReply() => new(Error, Error == 0 ? Data : null, string.Join(",", Shape));
    }

    private ReplyState State(ulong cookie)
    {
        if (!pending.TryGetValue(cookie, out var state))
        {
            state = new ReplyState(reads.GetValueOrDefault(cookie));
            pending[cookie] = state;
        }
        return state;
    }

    private void ReadOneMessage()
    {
        byte[] magicBytes = Receive(4, "reply");
        uint magic = BinaryPrimitives.ReadUInt32BigEndian(magicBytes);
        if (magic == NbdMagic.SimpleReply)
        {
            byte[] rest = Receive(NbdTransmission.SimpleReplySize - 4, "simple reply");
            byte[] whole = [.. magicBytes, .. rest];
            NbdTransmission.TryReadSimpleReply(whole, out var simple, out _);
            var state = State(simple.Cookie);
            state.Error = simple.Error;
            state.Shape.Add("simple");
            if (simple.Error == 0 && reads.TryGetValue(simple.Cookie, out var read) && read.Length > 0)
            {
                byte[] data = Receive((int)read.Length, "simple reply data");
                data.CopyTo(state.Data!, 0);
            }
            state.Done = true;
            reads.Remove(simple.Cookie);
            return;
        }
        if (magic != NbdMagic.StructuredReply)
        {
            throw new InvalidOperationException($"reply magic 0x{magic:x8} is neither simple nor structured");
        }

        byte[] header = [.. magicBytes, .. Receive(NbdTransmission.ChunkHeaderSize - 4, "chunk header")];
        if (!NbdTransmission.TryReadChunkHeader(header, 64u << 20, out var chunk, out string? error))
        {
            throw new InvalidOperationException($"bad chunk header: {error}");
        }
        byte[] payload = Receive((int)chunk.Length, "chunk payload");
        var current = State(chunk.Cookie);
        switch (chunk.Type)
        {
            case NbdChunk.TypeOffsetData:
                current.Shape.Add("data");
                ulong dataOffset = BinaryPrimitives.ReadUInt64BigEndian(payload);
                if (current.Data is not null && dataOffset >= current.RequestOffset && dataOffset - current.RequestOffset + (ulong)(payload.Length - NbdTransmission.OffsetDataPrefixSize) <= (ulong)current.Data.Length)
                {
                    payload.AsSpan(NbdTransmission.OffsetDataPrefixSize).CopyTo(current.Data.AsSpan((int)(dataOffset - current.RequestOffset)));
                }
                else
                {
                    current.Shape.Add("data outside the request");
                    current.Error = uint.MaxValue;
                }
                break;
            case NbdChunk.TypeOffsetHole:
                current.Shape.Add("hole");
                break; // the buffer starts zeroed
            case NbdChunk.TypeNone:
                current.Shape.Add("none");
                break;
            case NbdChunk.TypeBlockStatus:
                current.Shape.Add($"status({(payload.Length - 4) / 8})");
                break;
            default:
                if ((chunk.Type & NbdChunk.ErrorTypeBit) != 0)
                {
                    NbdTransmission.TryReadError(payload, out uint value, out _, out _);
                    current.Error = value;
                    current.Shape.Add($"error {ErrorName(value)}");
                }
                else
                {
                    current.Shape.Add($"type {chunk.Type}");
                }
                break;
        }
        if ((chunk.Flags & NbdChunk.FlagDone) != 0)
        {
            current.Done = true;
            reads.Remove(chunk.Cookie);
        }
    }

    /// <summary>The errno name of an NBD error value, "ok" for success.</summary>
    public static string ErrorName(uint error) => error == NbdError.None ? "ok" : NbdNames.Name(error);

    /// <summary>The name of an option reply type.</summary>
    public static string OptionReplyName(uint type) => NbdNames.OptionReply(type);

    public void Dispose() => socket.Dispose();
}
