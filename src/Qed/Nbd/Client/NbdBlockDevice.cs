using Qed.Formats;
using Qed.IO;

namespace Qed.Nbd.Client;

/// <summary>
/// An NBD export as a block device: what qemu calls the nbd protocol driver with the raw format on top. Reads, writes,
/// write-zeroes, discard and flush go to the server as NBD commands (many in flight on one connection); block status
/// comes from <c>base:allocation</c> when the server offers it.
/// </summary>
internal sealed class NbdBlockDevice : BlockDevice
{
    /// <summary>Zeros written per request where the server has no WRITE_ZEROES.</summary>
    private const int ZeroBufferSize = 1024 * 1024;

    /// <summary>Reads longer than this are sent as pieces of this size, all in flight at once.</summary>
    private const int ParallelReadPiece = 512 * 1024;

    private readonly NbdClient _client;
    private readonly string _fileName;
    private readonly bool _readOnly;

    /// <summary>Changes begun plus changes ended: a status answer is reused only while this has not moved and no change is in flight.</summary>
    private long _changeEvents;
    private int _changesInFlight;

    /// <summary>The extents of the last BLOCK_STATUS answer, which usually covers far more than the one extent asked for.</summary>
    private volatile StatusCache? _statusCache;

    private sealed record StatusCache(IReadOnlyList<NbdAllocationExtent> Extents, long ChangeEvents);

    private NbdBlockDevice(NbdClient client, string fileName, bool readOnly)
    {
        _client = client;
        _fileName = fileName;
        _readOnly = readOnly;
    }

    /// <summary>Connects to the export <paramref name="uri"/> names.</summary>
    /// <exception cref="QedReadOnlyException">A writable open of a read-only export.</exception>
    /// <exception cref="QedException">The URI is invalid, or the connection or handshake failed (<see cref="NbdException"/>).</exception>
    public static async ValueTask<NbdBlockDevice> OpenAsync(string uri, bool readOnly, bool useAsync, CancellationToken cancellationToken)
    {
        var parsed = NbdUri.Parse(uri);
        var connecting = NbdClient.ConnectAsync(parsed.EndPoint, parsed.ExportName, parsed.Server, parsed.Options, cancellationToken);
        // The sync API blocks here: the connection is asynchronous by nature.
        var client = useAsync ? await connecting.ConfigureAwait(false) : connecting.GetAwaiter().GetResult();
        if (!readOnly && client.IsReadOnly)
        {
            // As qemu: a writable open of a read-only export fails, rather than turning read-only behind the caller's back.
            if (useAsync)
            {
                await client.DisposeAsync().ConfigureAwait(false);
            }
            else
            {
                client.Dispose();
            }
            throw new QedReadOnlyException("Could not open image: Permission denied (the NBD export is read-only)");
        }
        return new NbdBlockDevice(client, uri, readOnly);
    }

    /// <summary>The connection, for tests and diagnostics.</summary>
    internal NbdClient Client => _client;

    /// <inheritdoc />
    public override long Size => _client.Size;

    /// <inheritdoc />
    public override bool IsReadOnly => _readOnly;

    /// <inheritdoc />
    public override string FormatName => ImageFormats.Raw.Name;

    /// <inheritdoc />
    public override string FileName => _fileName;

    /// <inheritdoc />
    public override BlockDeviceCapabilities Capabilities =>
        (IsReadOnly
            ? BlockDeviceCapabilities.None
            : BlockDeviceCapabilities.Write
              | (_client.CanWriteZeroes ? BlockDeviceCapabilities.ZeroFast : BlockDeviceCapabilities.None)
              | (_client.CanTrim ? BlockDeviceCapabilities.Discard : BlockDeviceCapabilities.None))
        | (_client.BaseAllocation ? BlockDeviceCapabilities.Extents : BlockDeviceCapabilities.None);

    /// <inheritdoc />
    /// <remarks>Large reads go out as several requests at once, so a server that works on requests in parallel does (a copy reads one large chunk at a time).</remarks>
    protected internal override ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken) =>
        Run(destination.Length <= ParallelReadPiece ? _client.ReadAsync(destination, offset, cancellationToken) : ReadInPiecesAsync(destination, offset, cancellationToken), useAsync);

    private async ValueTask ReadInPiecesAsync(Memory<byte> destination, long offset, CancellationToken cancellationToken)
    {
        var pieces = new Task[(destination.Length + ParallelReadPiece - 1) / ParallelReadPiece];
        for (int i = 0; i < pieces.Length; i++)
        {
            int at = i * ParallelReadPiece;
            pieces[i] = _client.ReadAsync(destination.Slice(at, Math.Min(ParallelReadPiece, destination.Length - at)), offset + at, cancellationToken).AsTask();
        }
        // Every piece is waited for: each fills part of the caller's buffer until it completes.
        await Task.WhenAll(pieces).ConfigureAwait(false);
    }

    /// <inheritdoc />
    protected internal override ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken) =>
        Change(_client.WriteAsync(source, offset, forceUnitAccess: false, cancellationToken), useAsync);

    /// <inheritdoc />
    /// <remarks>WRITE_ZEROES (with NO_HOLE unless unmapping is allowed), or zeros written where the server lacks it.</remarks>
    protected internal override ValueTask WriteZeroesCoreAsync(long offset, long length, bool mayUnmap, bool useAsync, CancellationToken cancellationToken) =>
        _client.CanWriteZeroes
            ? Change(_client.WriteZeroesAsync(offset, length, mayUnmap ? NbdWriteZeroesFlags.None : NbdWriteZeroesFlags.NoHole, cancellationToken), useAsync)
            : Change(WriteZeroBuffersAsync(offset, length, cancellationToken), useAsync);

    /// <inheritdoc />
    /// <remarks>TRIM where the server offers it; otherwise nothing (discard is advisory).</remarks>
    protected internal override ValueTask DiscardCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken) =>
        _client.CanTrim ? Change(_client.TrimAsync(offset, length, forceUnitAccess: false, cancellationToken), useAsync) : ValueTask.CompletedTask;

    /// <inheritdoc />
    protected internal override ValueTask FlushCoreAsync(bool useAsync, CancellationToken cancellationToken) =>
        Run(_client.FlushAsync(cancellationToken), useAsync);

    /// <inheritdoc />
    /// <remarks>
    /// From <c>base:allocation</c>: ranges that read as zeros are <see cref="BlockState.Zero"/>, the rest
    /// <see cref="BlockState.Data"/> (a hole whose contents are undefined must be read), each at its own offset as in a
    /// raw file. Without the context everything is data. A walk of the map asks extent by extent; the server answers
    /// with many, so the rest of an answer serves the next questions until anything changes the export.
    /// </remarks>
    protected internal override ValueTask<BlockStatus> GetStatusCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        if (!_client.BaseAllocation)
        {
            return new(new BlockStatus(offset, length, BlockState.Data, offset));
        }
        if (Cached(offset, length) is { } cached)
        {
            return new(cached);
        }
        var status = AskStatusAsync(offset, length, cancellationToken);
        return useAsync ? status : new(status.AsTask().GetAwaiter().GetResult());
    }

    private async ValueTask<BlockStatus> AskStatusAsync(long offset, long length, CancellationToken cancellationToken)
    {
        long changeEvents = Interlocked.Read(ref _changeEvents);
        bool stable = Volatile.Read(ref _changesInFlight) == 0;
        // Asked to the end of the export: the answer is kept for the questions that follow.
        var extents = await _client.GetBlockStatusAsync(offset, Size - offset, cancellationToken).ConfigureAwait(false);
        if (stable)
        {
            _statusCache = new StatusCache(extents, changeEvents);
        }
        return Status(extents[0], offset, length);
    }

    /// <summary>The status at <paramref name="offset"/> from the last answer, if nothing changed since it was asked.</summary>
    private BlockStatus? Cached(long offset, long length)
    {
        var cache = _statusCache;
        if (cache is null || Volatile.Read(ref _changesInFlight) != 0 || Interlocked.Read(ref _changeEvents) != cache.ChangeEvents)
        {
            return null;
        }
        var extents = cache.Extents;
        int lo = 0, hi = extents.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            var extent = extents[mid];
            if (offset < extent.Offset)
            {
                hi = mid - 1;
            }
            else if (offset >= extent.Offset + extent.Length)
            {
                lo = mid + 1;
            }
            else
            {
                return Status(extent, offset, length);
            }
        }
        return null;
    }

    private static BlockStatus Status(NbdAllocationExtent extent, long offset, long length) =>
        new(offset, Math.Min(length, extent.Offset + extent.Length - offset), extent.IsZero ? BlockState.Zero : BlockState.Data, offset);

    /// <summary>Runs a request that changes the export, invalidating the status answers held.</summary>
    private ValueTask Change(ValueTask request, bool useAsync)
    {
        // The request is already on its way; an answer asked before BeginChange below is still discarded, because the
        // event count it was stored with moves here. One asked after EndChange was sent after the change completed.
        BeginChange();
        if (!useAsync)
        {
            try
            {
                request.AsTask().GetAwaiter().GetResult();
            }
            finally
            {
                EndChange();
            }
            return ValueTask.CompletedTask;
        }
        return EndChangeAsync(request);
    }

    private async ValueTask EndChangeAsync(ValueTask request)
    {
        try
        {
            await request.ConfigureAwait(false);
        }
        finally
        {
            EndChange();
        }
    }

    private void BeginChange()
    {
        Interlocked.Increment(ref _changesInFlight);
        Interlocked.Increment(ref _changeEvents);
        _statusCache = null;
    }

    private void EndChange()
    {
        Interlocked.Increment(ref _changeEvents);
        Interlocked.Decrement(ref _changesInFlight);
        _statusCache = null;
    }

    /// <inheritdoc />
    protected override async ValueTask CloseCoreAsync(bool useAsync)
    {
        if (useAsync)
        {
            await _client.DisposeAsync().ConfigureAwait(false);
        }
        else
        {
            _client.Dispose();
        }
    }

    private async ValueTask WriteZeroBuffersAsync(long offset, long length, CancellationToken cancellationToken)
    {
        var zeros = new byte[(int)Math.Min(length, ZeroBufferSize)];
        for (long done = 0; done < length; done += zeros.Length)
        {
            int part = (int)Math.Min(zeros.Length, length - done);
            await _client.WriteAsync(zeros.AsMemory(0, part), offset + done, forceUnitAccess: false, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Runs a client request for the async API, or to completion (blocking) for the sync one.</summary>
    private static ValueTask Run(ValueTask request, bool useAsync)
    {
        if (useAsync)
        {
            return request;
        }
        request.AsTask().GetAwaiter().GetResult();
        return ValueTask.CompletedTask;
    }
}
