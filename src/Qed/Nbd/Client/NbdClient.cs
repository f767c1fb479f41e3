using System.Net;
using System.Net.Sockets;
using Qed.Nbd.Protocol;
using Qed.Nbd.Transport;

namespace Qed.Nbd.Client;

/// <summary>
/// A client of one NBD export over one connection (unix socket or TCP, optionally TLS): many requests may be in flight at once, from
/// any number of threads; replies are matched to requests by cookie and may come in any order.
/// </summary>
/// <remarks>
/// <para>
/// The handshake asks for structured replies, the <c>base:allocation</c> context and the block sizes; it falls back to
/// <c>EXPORT_NAME</c> and to simple replies with servers that lack them. Reads and writes longer than the server's
/// maximum payload are split; every reply is checked against its request (a READ chunk outside the requested range, an
/// overlap, a gap, an unknown cookie, a length too large): a server that breaks the protocol fails the connection, and
/// every request in flight fails with an <see cref="NbdException"/> saying what it did.
/// </para>
/// <para>
/// A request the server refuses throws an <see cref="NbdException"/> carrying the errno name (<c>EIO</c>, <c>ENOSPC</c>...).
/// Cancellation is honoured until a request is sent; once sent, a request waits for its reply (the server writes into
/// the caller's buffer until then). Disposing waits for the requests in flight, sends <c>NBD_CMD_DISC</c> and closes.
/// </para>
/// </remarks>
public sealed class NbdClient : IAsyncDisposable, IDisposable
{
    /// <summary>Trim, write-zeroes and cache requests are split at this length (a multiple of every legal minimum block size).</summary>
    private const uint MaxEffectLength = 1u << 30;

    /// <summary>Largest BLOCK_STATUS chunk accepted: 4 + 8 bytes per extent, 2^20 extents (NBD.md 4.1 caps a chunk there).</summary>
    private const int MaxBlockStatusLength = 4 + (8 << 20);

    /// <summary>Largest ERROR chunk accepted: the fixed part, a message of the protocol's string limit, an offset.</summary>
    private const int MaxErrorLength = 6 + NbdLimits.MaxStringBytes + 8;

    private readonly NbdTransport _transport;
    private readonly NbdExportInfo _info;
    private readonly string _server;
    private readonly TimeSpan _closeTimeout;
    private readonly uint _maxChunkLength;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly byte[] _requestHeader = new byte[NbdTransmission.RequestSize];
    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, NbdPendingRequest> _pending = [];
    private readonly Task _reader;
    private ulong _lastCookie;
    private NbdException? _failure;
    private bool _closing;
    private TaskCompletionSource? _drained;
    private int _disposed;
    private long _blockStatusRequests;

    private NbdClient(NbdTransport transport, NbdExportInfo info, string server, NbdClientOptions options)
    {
        _transport = transport;
        _info = info;
        _server = server;
        _closeTimeout = options.CloseTimeout;
        _maxChunkLength = (uint)Math.Max(NbdTransmission.OffsetDataPrefixSize + (long)info.MaximumPayload, MaxBlockStatusLength);
        _reader = Task.Run(ReadRepliesAsync);
    }

    /// <summary>
    /// Connects to the export an NBD URI names: <c>nbd://HOST[:PORT]/EXPORT</c>, <c>nbd+tcp://...</c> or
    /// <c>nbd+unix:///EXPORT?socket=PATH</c>; <c>nbds</c> for TLS, with libnbd's <c>tls-certificates=DIR</c>,
    /// <c>tls-verify-peer=false</c> and <c>tls-hostname=NAME</c> parameters.
    /// </summary>
    /// <exception cref="QedException">The URI is not a valid NBD URI (the message says why).</exception>
    /// <exception cref="NbdException">The connection or the handshake failed, or the server refused the export.</exception>
    public static Task<NbdClient> ConnectAsync(string uri, CancellationToken cancellationToken)
    {
        var parsed = NbdUri.Parse(uri);
        return ConnectAsync(parsed.EndPoint, parsed.ExportName, parsed.Server, parsed.Options, cancellationToken);
    }

    /// <summary>Connects to export <paramref name="exportName"/> (empty: the server's default) of the server at <paramref name="endPoint"/> (a <see cref="UnixDomainSocketEndPoint"/>, <see cref="IPEndPoint"/> or <see cref="DnsEndPoint"/>).</summary>
    /// <exception cref="NbdException">The connection or the handshake failed, or the server refused the export.</exception>
    public static Task<NbdClient> ConnectAsync(EndPoint endPoint, string exportName, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        ArgumentNullException.ThrowIfNull(exportName);
        return ConnectAsync(endPoint, exportName, endPoint.ToString() ?? "server", new NbdClientOptions(), cancellationToken);
    }

    /// <summary>Connects with explicit handshake options; <paramref name="server"/> is what messages call the server.</summary>
    internal static async Task<NbdClient> ConnectAsync(EndPoint endPoint, string exportName, string server, NbdClientOptions options, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(options.ConnectTimeout);
        var socket = endPoint switch
        {
            UnixDomainSocketEndPoint => new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified),
            IPEndPoint ip => new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp),
            _ => new Socket(SocketType.Stream, ProtocolType.Tcp), // dual-mode: a name may resolve to IPv4 or IPv6
        };
        NbdTransport? transport = null;
        try
        {
            try
            {
                await socket.ConnectAsync(endPoint, deadline.Token).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                // .NET words a missing unix socket as "Cannot assign requested address"; qemu says what it is.
                string reason = endPoint is UnixDomainSocketEndPoint unix && unix.ToString() is { Length: > 0 } path && !File.Exists(path)
                    ? "No such file or directory"
                    : e.Message;
                throw new NbdException($"Failed to connect to '{server}': {reason}", e);
            }
            transport = new SocketTransport(socket);
            var (info, negotiated) = await NbdClientHandshake.NegotiateAsync(transport, exportName, options, server, deadline.Token).ConfigureAwait(false);
            return new NbdClient(negotiated, info, server, options);
        }
        catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
        {
            await DropAsync(socket, transport).ConfigureAwait(false);
            throw new NbdException($"NBD handshake with '{server}' failed: no answer within {options.ConnectTimeout.TotalSeconds:0.#} s", e);
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            await DropAsync(socket, transport).ConfigureAwait(false);
            throw e as NbdException ?? new NbdException($"NBD handshake with '{server}' failed: {e.Message}", e);
        }
        catch
        {
            await DropAsync(socket, transport).ConfigureAwait(false);
            throw;
        }
    }

    private static async ValueTask DropAsync(Socket socket, NbdTransport? transport)
    {
        if (transport is not null)
        {
            await transport.DisposeAsync().ConfigureAwait(false);
        }
        socket.Dispose();
    }

    /// <summary>Export size in bytes.</summary>
    public long Size => _info.Size;

    /// <summary>The export's name as the server reports it (or as asked, when it reports none).</summary>
    public string ExportName => _info.Name;

    /// <summary>The export's description, when the server gave one.</summary>
    public string? Description => _info.Description;

    /// <summary>The export refuses writes.</summary>
    public bool IsReadOnly => _info.Has(NbdTransmissionFlags.ReadOnly);

    /// <summary>The server accepts FLUSH (otherwise <see cref="FlushAsync"/> does nothing).</summary>
    public bool CanFlush => _info.Has(NbdTransmissionFlags.SendFlush);

    /// <summary>The server accepts the force-unit-access flag (otherwise the client flushes after such a request).</summary>
    public bool CanForceUnitAccess => _info.Has(NbdTransmissionFlags.SendFua);

    /// <summary>The server accepts TRIM.</summary>
    public bool CanTrim => _info.Has(NbdTransmissionFlags.SendTrim);

    /// <summary>The server accepts WRITE_ZEROES.</summary>
    public bool CanWriteZeroes => _info.Has(NbdTransmissionFlags.SendWriteZeroes);

    /// <summary>The server accepts <see cref="NbdWriteZeroesFlags.FastZero"/>.</summary>
    public bool CanFastZero => _info.Has(NbdTransmissionFlags.SendFastZero);

    /// <summary>The server accepts CACHE.</summary>
    public bool CanCache => _info.Has(NbdTransmissionFlags.SendCache);

    /// <summary>The server says several connections to this export see one consistent disk (a flush on one covers all).</summary>
    public bool CanMultiConn => _info.Has(NbdTransmissionFlags.CanMultiConn);

    /// <summary>The server says the export is on rotational media.</summary>
    public bool IsRotational => _info.Has(NbdTransmissionFlags.Rotational);

    /// <summary>Replies come as structured chunks (reads of holes skip their zeros; errors carry messages).</summary>
    public bool StructuredReplies => _info.StructuredReplies;

    /// <summary>The <c>base:allocation</c> context was negotiated: <see cref="GetBlockStatusAsync"/> works.</summary>
    public bool BaseAllocation => _info.BaseAllocationId is not null;

    /// <summary>Smallest addressable unit the server advertised (1 when it advertised none).</summary>
    public int MinimumBlockSize => (int)_info.MinimumBlockSize;

    /// <summary>Request alignment the server prefers (4096 when it advertised none).</summary>
    public int PreferredBlockSize => (int)_info.PreferredBlockSize;

    /// <summary>Largest payload of one READ or WRITE; longer ones are split.</summary>
    public int MaximumPayload => (int)_info.MaximumPayload;

    /// <summary>The raw transmission flags (for tests and diagnostics).</summary>
    internal ushort TransmissionFlags => _info.TransmissionFlags;

    /// <summary>BLOCK_STATUS requests sent so far (for tests of the device's status reuse).</summary>
    internal long BlockStatusRequests => Interlocked.Read(ref _blockStatusRequests);

    /// <summary>What the handshake settled.</summary>
    internal NbdExportInfo Info => _info;

    /// <summary>Reads <paramref name="destination"/>'s length at <paramref name="offset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range lies outside the export.</exception>
    /// <exception cref="NbdException">The server refused the read, or the connection failed.</exception>
    public ValueTask ReadAsync(Memory<byte> destination, long offset, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, destination.Length);
        return SplitAsync(offset, destination.Length, _info.MaximumPayload, (offset, destination), static (c, s, at, length, ct) =>
            c.SendAsync(NbdCommand.Read, 0, (ulong)at, length, ReadOnlyMemory<byte>.Empty, s.destination.Slice((int)(at - s.offset), (int)length), ct), cancellationToken);
    }

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/>; with <paramref name="forceUnitAccess"/> it completes once the data is durable.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range lies outside the export.</exception>
    /// <exception cref="QedReadOnlyException">The export is read-only.</exception>
    /// <exception cref="NbdException">The server refused the write, or the connection failed.</exception>
    public ValueTask WriteAsync(ReadOnlyMemory<byte> source, long offset, bool forceUnitAccess = false, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, source.Length);
        ushort flags = Fua(forceUnitAccess);
        return WithFlushAsync(forceUnitAccess && flags == 0, SplitAsync(offset, source.Length, _info.MaximumPayload, (offset, source, flags), static (c, s, at, length, ct) =>
            c.SendAsync(NbdCommand.Write, s.flags, (ulong)at, length, s.source.Slice((int)(at - s.offset), (int)length), Memory<byte>.Empty, ct), cancellationToken), cancellationToken);
    }

    /// <summary>Makes every write the server has completed durable (nothing to do when the server does not offer FLUSH).</summary>
    /// <exception cref="NbdException">The server refused the flush, or the connection failed.</exception>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default) =>
        CanFlush ? new ValueTask(SendAsync(NbdCommand.Flush, 0, 0, 0, ReadOnlyMemory<byte>.Empty, Memory<byte>.Empty, cancellationToken)) : ValueTask.CompletedTask;

    /// <summary>Tells the server <paramref name="length"/> bytes at <paramref name="offset"/> are no longer needed (TRIM; advisory).</summary>
    /// <exception cref="QedUnsupportedException">The server does not accept TRIM (<see cref="CanTrim"/>).</exception>
    public ValueTask TrimAsync(long offset, long length, bool forceUnitAccess = false, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        if (!CanTrim)
        {
            throw new QedUnsupportedException($"The NBD server '{_server}' does not accept TRIM");
        }
        ushort flags = Fua(forceUnitAccess);
        return WithFlushAsync(forceUnitAccess && flags == 0, SplitAsync(offset, length, MaxEffectLength, flags, static (c, f, at, len, ct) =>
            c.SendAsync(NbdCommand.Trim, f, (ulong)at, len, ReadOnlyMemory<byte>.Empty, Memory<byte>.Empty, ct), cancellationToken), cancellationToken);
    }

    /// <summary>Makes <paramref name="length"/> bytes at <paramref name="offset"/> read as zeros (WRITE_ZEROES).</summary>
    /// <exception cref="QedUnsupportedException">The server does not accept WRITE_ZEROES, or fast zeroing was asked and it does not offer that.</exception>
    /// <exception cref="NbdException">The server refused the request (<c>ENOTSUP</c> for a fast zero it cannot do quickly), or the connection failed.</exception>
    public ValueTask WriteZeroesAsync(long offset, long length, NbdWriteZeroesFlags flags = NbdWriteZeroesFlags.None, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        if (!CanWriteZeroes)
        {
            throw new QedUnsupportedException($"The NBD server '{_server}' does not accept WRITE_ZEROES");
        }
        if ((flags & NbdWriteZeroesFlags.FastZero) != 0 && !CanFastZero)
        {
            throw new QedUnsupportedException($"The NBD server '{_server}' does not accept fast zeroing");
        }
        bool fua = (flags & NbdWriteZeroesFlags.ForceUnitAccess) != 0;
        ushort wire = (ushort)(Fua(fua)
            | ((flags & NbdWriteZeroesFlags.NoHole) != 0 ? NbdCommandFlags.NoHole : 0)
            | ((flags & NbdWriteZeroesFlags.FastZero) != 0 ? NbdCommandFlags.FastZero : 0));
        return WithFlushAsync(fua && !CanForceUnitAccess, SplitAsync(offset, length, MaxEffectLength, wire, static (c, f, at, len, ct) =>
            c.SendAsync(NbdCommand.WriteZeroes, f, (ulong)at, len, ReadOnlyMemory<byte>.Empty, Memory<byte>.Empty, ct), cancellationToken), cancellationToken);
    }

    /// <summary>Asks the server to prefetch a range (CACHE; advisory: nothing happens when the server does not offer it).</summary>
    public ValueTask CacheAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, length);
        return CanCache
            ? SplitAsync(offset, length, MaxEffectLength, 0, static (c, _, at, len, ct) =>
                c.SendAsync(NbdCommand.Cache, 0, (ulong)at, len, ReadOnlyMemory<byte>.Empty, Memory<byte>.Empty, ct), cancellationToken)
            : ValueTask.CompletedTask;
    }

    /// <summary>
    /// The <c>base:allocation</c> extents from <paramref name="offset"/>: contiguous, inside <c>[offset, offset + length)</c>,
    /// at least one; they may end before <paramref name="length"/> (ask again from where they end).
    /// </summary>
    /// <exception cref="InvalidOperationException">The context was not negotiated (<see cref="BaseAllocation"/>).</exception>
    /// <exception cref="NbdException">The server refused the request, or the connection failed.</exception>
    public async ValueTask<IReadOnlyList<NbdAllocationExtent>> GetBlockStatusAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        if (length <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), "The length must be positive.");
        }
        CheckRange(offset, length);
        if (!BaseAllocation)
        {
            throw new InvalidOperationException($"The NBD server '{_server}' did not negotiate base:allocation");
        }
        Interlocked.Increment(ref _blockStatusRequests);
        uint asked = (uint)Math.Min(length, MaxEffectLength);
        var request = new NbdPendingRequest(NbdCommand.BlockStatus, (ulong)offset, asked, Memory<byte>.Empty);
        await SendAsync(request, 0, ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
        // Extents are contiguous from the offset; the last may run past the request: clamp it (and never past the export).
        long end = offset + length;
        var extents = new List<NbdAllocationExtent>(request.Extents!.Length);
        long at = offset;
        foreach (var extent in request.Extents)
        {
            long run = Math.Min(extent.Length, end - at);
            extents.Add(new NbdAllocationExtent(at, run, (extent.Flags & NbdChunk.StateHole) != 0, (extent.Flags & NbdChunk.StateZero) != 0));
            at += run;
            if (at >= end)
            {
                break;
            }
        }
        return extents;
    }

    /// <inheritdoc />
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>Waits for the requests in flight (up to a timeout), sends <c>NBD_CMD_DISC</c> and closes the connection.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        Task? drained = null;
        lock (_lock)
        {
            _closing = true;
            if (_pending.Count > 0)
            {
                _drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                drained = _drained.Task;
            }
        }
        try
        {
            if (drained is not null)
            {
                await drained.WaitAsync(_closeTimeout).ConfigureAwait(false);
            }
            if (Volatile.Read(ref _failure) is null)
            {
                await SendDisconnectAsync().ConfigureAwait(false);
                // The server closes after DISC; the reader then ends on a clean end of stream.
                await _reader.WaitAsync(_closeTimeout).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is TimeoutException or IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // A server that does not close in time is dropped below.
        }
        finally
        {
            Fail(new NbdException($"The NBD connection to '{_server}' is closed"));
            await _transport.DisposeAsync().ConfigureAwait(false);
            try
            {
                await _reader.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // The reader reports through Fail, never through its task; nothing is left to report.
            }
        }
    }

    /// <summary>Sends DISC and shuts the sending side; gives up (the connection is then dropped) when a writer stuck on a server that stopped reading holds the line past the close timeout.</summary>
    private async Task SendDisconnectAsync()
    {
        using var deadline = new CancellationTokenSource(_closeTimeout);
        if (!await _writeLock.WaitAsync(_closeTimeout).ConfigureAwait(false))
        {
            return;
        }
        try
        {
            NbdTransmission.WriteRequest(_requestHeader, new NbdRequest(0, NbdCommand.Disc, 0, 0, 0));
            await _transport.WriteAsync(_requestHeader, ReadOnlyMemory<byte>.Empty, deadline.Token).ConfigureAwait(false);
            await _transport.ShutdownAsync(deadline.Token).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private ushort Fua(bool forceUnitAccess) => forceUnitAccess && CanForceUnitAccess ? NbdCommandFlags.Fua : (ushort)0;

    /// <summary>Force unit access where the server lacks the flag: the request, then a flush.</summary>
    private async ValueTask WithFlushAsync(bool flush, ValueTask request, CancellationToken cancellationToken)
    {
        await request.ConfigureAwait(false);
        if (flush)
        {
            await FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Sends <c>[offset, offset + length)</c> as requests of at most <paramref name="max"/> bytes, all in flight at once, and waits for every one.</summary>
    private async ValueTask SplitAsync<TState>(long offset, long length, uint max, TState state, Func<NbdClient, TState, long, uint, CancellationToken, Task> send, CancellationToken cancellationToken)
    {
        if (length == 0)
        {
            return;
        }
        if (length <= max)
        {
            await send(this, state, offset, (uint)length, cancellationToken).ConfigureAwait(false);
            return;
        }
        var parts = new List<Task>((int)Math.Min((length + max - 1) / max, 1024));
        try
        {
            for (long at = offset, end = offset + length; at < end; at += max)
            {
                parts.Add(send(this, state, at, (uint)Math.Min(max, end - at), cancellationToken));
            }
        }
        finally
        {
            // Every part sent must be waited for (a READ's part fills the caller's buffer until it completes).
            await Task.WhenAll(parts).ConfigureAwait(false);
        }
    }

    /// <summary>Sends one request as given, without the range, flag or read-only checks (for tests of the server's refusals).</summary>
    internal Task SendUncheckedAsync(ushort command, ushort flags, ulong offset, uint length, ReadOnlyMemory<byte> payload, Memory<byte> destination, CancellationToken cancellationToken) =>
        SendAsync(command, flags, offset, length, payload, destination, cancellationToken);

    private Task SendAsync(ushort command, ushort flags, ulong offset, uint length, ReadOnlyMemory<byte> payload, Memory<byte> destination, CancellationToken cancellationToken) =>
        SendAsync(new NbdPendingRequest(command, offset, length, destination), flags, payload, cancellationToken);

    /// <summary>Registers the request under a fresh cookie, writes it (header and payload in one gather-write) and waits for its reply.</summary>
    private async Task SendAsync(NbdPendingRequest request, ushort flags, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ulong cookie;
        lock (_lock)
        {
            if (_failure is { } failure)
            {
                throw new NbdException(failure.Message, failure);
            }
            ObjectDisposedException.ThrowIf(_closing, this);
            cookie = ++_lastCookie;
            _pending.Add(cookie, request);
        }
        try
        {
            await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            Take(cookie);
            throw;
        }
        try
        {
            NbdTransmission.WriteRequest(_requestHeader, new NbdRequest(flags, request.Command, cookie, request.Offset, request.Length));
            // Not cancellable: half a request on the wire would desynchronise the stream.
            await _transport.WriteAsync(_requestHeader, payload, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            Fail(new NbdException($"Sending {request.Describe()} to the NBD server '{_server}' failed: {e.Message}", e));
        }
        finally
        {
            _writeLock.Release();
        }
        await request.Completion.Task.ConfigureAwait(false);
    }

    /// <summary>Removes a request from the pending map (its reply is complete, or it was never sent).</summary>
    private NbdPendingRequest? Take(ulong cookie)
    {
        lock (_lock)
        {
            if (!_pending.Remove(cookie, out var request))
            {
                return null;
            }
            if (_closing && _pending.Count == 0)
            {
                _drained?.TrySetResult();
            }
            return request;
        }
    }

    private NbdPendingRequest? Find(ulong cookie)
    {
        lock (_lock)
        {
            return _pending.GetValueOrDefault(cookie);
        }
    }

    /// <summary>Fails the connection: every request in flight and every later one fails with <paramref name="failure"/> (the first failure wins).</summary>
    private void Fail(NbdException failure)
    {
        NbdPendingRequest[] failed;
        lock (_lock)
        {
            _failure ??= failure;
            failure = _failure;
            failed = [.. _pending.Values];
            _pending.Clear();
            _drained?.TrySetResult();
        }
        foreach (var request in failed)
        {
            request.Completion.TrySetException(failure);
        }
        // Unblocks a reader or writer stuck on the socket.
        _ = _transport.DisposeAsync();
    }

    /// <summary>The reply reader: one loop per connection, dispatching each reply to its request by cookie.</summary>
    private async Task ReadRepliesAsync()
    {
        var header = new byte[NbdTransmission.ChunkHeaderSize];
        try
        {
            while (true)
            {
                if (!await _transport.ReadExactlyAsync(header.AsMemory(0, NbdTransmission.SimpleReplySize), CancellationToken.None).ConfigureAwait(false))
                {
                    bool expected;
                    int inFlight;
                    lock (_lock)
                    {
                        inFlight = _pending.Count;
                        expected = _closing && inFlight == 0;
                    }
                    Fail(new NbdException(expected
                        ? $"The NBD connection to '{_server}' is closed"
                        : $"The NBD server '{_server}' closed the connection with {inFlight} request{(inFlight == 1 ? "" : "s")} in flight"));
                    return;
                }
                uint magic = NbdTransmission.ReplyMagic(header);
                if (magic == NbdMagic.SimpleReply)
                {
                    if (!NbdTransmission.TryReadSimpleReply(header, out var reply, out string? error))
                    {
                        throw Violation(error!);
                    }
                    await OnSimpleReplyAsync(reply).ConfigureAwait(false);
                }
                else if (magic == NbdMagic.StructuredReply && _info.StructuredReplies)
                {
                    await ReadExactlyAsync(header.AsMemory(NbdTransmission.SimpleReplySize, NbdTransmission.ChunkHeaderSize - NbdTransmission.SimpleReplySize)).ConfigureAwait(false);
                    // The length is checked against the largest chunk any request allows before anything is sized from it.
                    if (!NbdTransmission.TryReadChunkHeader(header, _maxChunkLength, out var chunk, out string? error))
                    {
                        throw Violation(error!);
                    }
                    await OnChunkAsync(chunk).ConfigureAwait(false);
                }
                else
                {
                    throw Violation(magic == NbdMagic.StructuredReply
                        ? "a structured reply chunk, but structured replies were not negotiated"
                        : $"reply magic 0x{magic:x8} is neither a simple reply nor a structured chunk");
                }
            }
        }
        catch (NbdException e)
        {
            Fail(e);
        }
        catch (Exception e)
        {
            // Whatever ends the reader fails the connection, so no request waits for a reply that cannot come.
            Fail(new NbdException(e is EndOfStreamException
                ? $"The NBD server '{_server}' closed the connection part-way through a reply"
                : $"Reading from the NBD server '{_server}' failed: {e.Message}", e));
        }
    }

    private async ValueTask OnSimpleReplyAsync(NbdSimpleReply reply)
    {
        // The request stays pending until its data is in, so a failure meanwhile fails it too.
        var request = Find(reply.Cookie) ?? throw Violation($"simple reply for cookie 0x{reply.Cookie:x16}, which is not in flight");
        if (request.SawChunk)
        {
            throw Violation($"simple reply to {request.Describe()} after structured chunks for it");
        }
        if (reply.Error == NbdError.None && request.Command == NbdCommand.Read)
        {
            await ReadExactlyAsync(request.Destination).ConfigureAwait(false);
        }
        Take(reply.Cookie);
        if (reply.Error != NbdError.None)
        {
            request.Completion.TrySetException(Refusal(request, reply.Error, ""));
        }
        else if (request.Command == NbdCommand.BlockStatus)
        {
            request.Completion.TrySetException(new NbdException($"The NBD server '{_server}' answered {request.Describe()} with a simple reply, which carries no extents"));
        }
        else
        {
            request.Completion.TrySetResult();
        }
    }

    private async ValueTask OnChunkAsync(NbdChunkHeader chunk)
    {
        var request = Find(chunk.Cookie) ?? throw Violation($"chunk for cookie 0x{chunk.Cookie:x16}, which is not in flight");
        request.SawChunk = true;
        switch (chunk.Type)
        {
            case NbdChunk.TypeNone:
                if (chunk.Length != 0 || (chunk.Flags & NbdChunk.FlagDone) == 0)
                {
                    throw Violation($"NONE chunk of {chunk.Length} bytes with flags 0x{chunk.Flags:x4} for {request.Describe()} (it must be empty and final)");
                }
                break;
            case NbdChunk.TypeOffsetData:
                await OnOffsetDataAsync(request, chunk).ConfigureAwait(false);
                break;
            case NbdChunk.TypeOffsetHole:
                await OnOffsetHoleAsync(request, chunk).ConfigureAwait(false);
                break;
            case NbdChunk.TypeBlockStatus:
                await OnBlockStatusAsync(request, chunk).ConfigureAwait(false);
                break;
            case NbdChunk.TypeError:
            case NbdChunk.TypeErrorOffset:
                await OnErrorAsync(request, chunk).ConfigureAwait(false);
                break;
            default:
                if ((chunk.Type & NbdChunk.ErrorTypeBit) == 0)
                {
                    throw Violation($"unknown chunk type {chunk.Type} for {request.Describe()}");
                }
                // An unknown error type only fails the request (NBD.md 2.3).
                await ReadPayloadAsync(chunk, MaxErrorLength, request).ConfigureAwait(false);
                request.Error ??= new NbdException($"The NBD server '{_server}' failed {request.Describe()} with an error chunk of unknown type {chunk.Type}", NbdError.Io);
                break;
        }
        if ((chunk.Flags & NbdChunk.FlagDone) != 0)
        {
            Take(chunk.Cookie);
            Finish(request);
        }
    }

    /// <summary>Completes a request whose last chunk came (it is no longer pending, so a violation fails it here as well as the connection).</summary>
    private void Finish(NbdPendingRequest request)
    {
        NbdException? violation = null;
        if (request.Error is { } error)
        {
            request.Completion.TrySetException(error);
        }
        else if (request.Command == NbdCommand.Read && request.Coverage.Covered != request.Length)
        {
            violation = Violation($"the reply to {request.Describe()} covered only {request.Coverage.Covered} bytes");
        }
        else if (request.Command == NbdCommand.BlockStatus && request.Extents is null)
        {
            violation = Violation($"the reply to {request.Describe()} carried no base:allocation extents");
        }
        else
        {
            request.Completion.TrySetResult();
        }
        if (violation is not null)
        {
            request.Completion.TrySetException(violation);
            throw violation;
        }
    }

    private async ValueTask OnOffsetDataAsync(NbdPendingRequest request, NbdChunkHeader chunk)
    {
        if (request.Command != NbdCommand.Read)
        {
            throw Violation($"OFFSET_DATA chunk for {request.Describe()}");
        }
        var prefix = new byte[NbdTransmission.OffsetDataPrefixSize];
        if (chunk.Length <= NbdTransmission.OffsetDataPrefixSize || chunk.Length - NbdTransmission.OffsetDataPrefixSize > request.Length)
        {
            throw Violation($"OFFSET_DATA chunk of {chunk.Length} bytes for {request.Describe()}");
        }
        await ReadExactlyAsync(prefix).ConfigureAwait(false);
        if (!NbdTransmission.TryReadOffsetDataPrefix(prefix, chunk.Length, out ulong offset, out string? error))
        {
            throw Violation(error!);
        }
        uint length = chunk.Length - NbdTransmission.OffsetDataPrefixSize;
        int at = Place(request, "OFFSET_DATA", offset, length);
        await ReadExactlyAsync(request.Destination.Slice(at, (int)length)).ConfigureAwait(false);
    }

    private async ValueTask OnOffsetHoleAsync(NbdPendingRequest request, NbdChunkHeader chunk)
    {
        if (request.Command != NbdCommand.Read)
        {
            throw Violation($"OFFSET_HOLE chunk for {request.Describe()}");
        }
        if (chunk.Length != NbdTransmission.OffsetHoleSize)
        {
            throw Violation($"OFFSET_HOLE chunk of {chunk.Length} bytes (it must be {NbdTransmission.OffsetHoleSize})");
        }
        var payload = new byte[NbdTransmission.OffsetHoleSize];
        await ReadExactlyAsync(payload).ConfigureAwait(false);
        if (!NbdTransmission.TryReadOffsetHole(payload, out ulong offset, out uint holeSize, out string? error))
        {
            throw Violation(error!);
        }
        int at = Place(request, "OFFSET_HOLE", offset, holeSize);
        request.Destination.Span.Slice(at, (int)holeSize).Clear();
    }

    /// <summary>Where a content chunk lands in the READ's buffer; refuses one outside the request or overlapping an earlier one.</summary>
    private int Place(NbdPendingRequest request, string type, ulong offset, uint length)
    {
        // Unsigned and overflow-free: offset - request.Offset only after offset >= request.Offset.
        if (offset < request.Offset || offset - request.Offset > request.Length || length > request.Length - (offset - request.Offset))
        {
            throw Violation($"{type} chunk of {length} bytes at {offset} lies outside {request.Describe()}");
        }
        ulong relative = offset - request.Offset;
        if (!request.Coverage.TryAdd(relative, length))
        {
            throw Violation($"{type} chunk of {length} bytes at {offset} overlaps an earlier chunk of {request.Describe()}");
        }
        return (int)relative;
    }

    private async ValueTask OnBlockStatusAsync(NbdPendingRequest request, NbdChunkHeader chunk)
    {
        if (request.Command != NbdCommand.BlockStatus)
        {
            throw Violation($"BLOCK_STATUS chunk for {request.Describe()}");
        }
        byte[] payload = await ReadPayloadAsync(chunk, MaxBlockStatusLength, request).ConfigureAwait(false);
        if (!NbdTransmission.TryReadBlockStatus(payload, out uint contextId, out var extents, out string? error))
        {
            throw Violation(error!);
        }
        if (contextId != _info.BaseAllocationId)
        {
            throw Violation($"BLOCK_STATUS chunk for context {contextId}, but base:allocation is {_info.BaseAllocationId}");
        }
        if (request.Extents is not null)
        {
            throw Violation($"a second BLOCK_STATUS chunk for {request.Describe()}");
        }
        request.Extents = extents;
    }

    private async ValueTask OnErrorAsync(NbdPendingRequest request, NbdChunkHeader chunk)
    {
        byte[] payload = await ReadPayloadAsync(chunk, MaxErrorLength, request).ConfigureAwait(false);
        uint value;
        string message;
        string? error;
        bool ok = chunk.Type == NbdChunk.TypeError
            ? NbdTransmission.TryReadError(payload, out value, out message, out error)
            : NbdTransmission.TryReadErrorOffset(payload, out value, out message, out _, out error);
        if (!ok)
        {
            throw Violation(error!);
        }
        request.Error ??= Refusal(request, value, message);
    }

    private async ValueTask<byte[]> ReadPayloadAsync(NbdChunkHeader chunk, int max, NbdPendingRequest request)
    {
        if (chunk.Length > max)
        {
            throw Violation($"chunk type {chunk.Type} of {chunk.Length} bytes for {request.Describe()} (at most {max} allowed)");
        }
        var payload = new byte[chunk.Length];
        await ReadExactlyAsync(payload).ConfigureAwait(false);
        return payload;
    }

    private async ValueTask ReadExactlyAsync(Memory<byte> destination)
    {
        if (destination.Length > 0 && !await _transport.ReadExactlyAsync(destination, CancellationToken.None).ConfigureAwait(false))
        {
            throw new EndOfStreamException("the server closed the connection part-way through a reply");
        }
    }

    private NbdException Refusal(NbdPendingRequest request, uint error, string message)
    {
        string text = $"{NbdErrors.Text(error)} ({NbdErrors.Name(error)})";
        message = message.ReplaceLineEndings(" ").Trim();
        return new NbdException($"The NBD server '{_server}' failed {request.Describe()}: {text}{(message.Length > 0 ? ": " + message : "")}", error);
    }

    private NbdException Violation(string what) => new($"The NBD server '{_server}' broke the protocol: {what}");

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Size - length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"The request of {length} bytes at offset {offset} lies outside the {Size}-byte export.");
        }
    }

    private void CheckWritable()
    {
        if (IsReadOnly)
        {
            throw new QedReadOnlyException($"The NBD export '{ExportName}' on '{_server}' is read-only");
        }
    }
}
