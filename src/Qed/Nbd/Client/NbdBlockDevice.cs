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

    private readonly NbdClient _client;
    private readonly string _fileName;
    private readonly bool _readOnly;

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
        var connecting = NbdClient.ConnectAsync(parsed.EndPoint, parsed.ExportName, parsed.Server, new NbdClientOptions(), cancellationToken);
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
    protected internal override ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken) =>
        Run(_client.ReadAsync(destination, offset, cancellationToken), useAsync);

    /// <inheritdoc />
    protected internal override ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken) =>
        Run(_client.WriteAsync(source, offset, forceUnitAccess: false, cancellationToken), useAsync);

    /// <inheritdoc />
    /// <remarks>WRITE_ZEROES (with NO_HOLE unless unmapping is allowed), or zeros written where the server lacks it.</remarks>
    protected internal override ValueTask WriteZeroesCoreAsync(long offset, long length, bool mayUnmap, bool useAsync, CancellationToken cancellationToken) =>
        _client.CanWriteZeroes
            ? Run(_client.WriteZeroesAsync(offset, length, mayUnmap ? NbdWriteZeroesFlags.None : NbdWriteZeroesFlags.NoHole, cancellationToken), useAsync)
            : Run(WriteZeroBuffersAsync(offset, length, cancellationToken), useAsync);

    /// <inheritdoc />
    /// <remarks>TRIM where the server offers it; otherwise nothing (discard is advisory).</remarks>
    protected internal override ValueTask DiscardCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken) =>
        _client.CanTrim ? Run(_client.TrimAsync(offset, length, forceUnitAccess: false, cancellationToken), useAsync) : ValueTask.CompletedTask;

    /// <inheritdoc />
    protected internal override ValueTask FlushCoreAsync(bool useAsync, CancellationToken cancellationToken) =>
        Run(_client.FlushAsync(cancellationToken), useAsync);

    /// <inheritdoc />
    /// <remarks>
    /// From <c>base:allocation</c>: ranges that read as zeros are <see cref="BlockState.Zero"/>, the rest
    /// <see cref="BlockState.Data"/> (a hole whose contents are undefined must be read), each at its own offset as in a
    /// raw file. Without the context everything is data.
    /// </remarks>
    protected internal override ValueTask<BlockStatus> GetStatusCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        if (!_client.BaseAllocation)
        {
            return new(new BlockStatus(offset, length, BlockState.Data, offset));
        }
        var status = FirstExtentAsync(offset, length, cancellationToken);
        return useAsync ? status : new(status.AsTask().GetAwaiter().GetResult());
    }

    private async ValueTask<BlockStatus> FirstExtentAsync(long offset, long length, CancellationToken cancellationToken)
    {
        var extents = await _client.GetBlockStatusAsync(offset, length, cancellationToken).ConfigureAwait(false);
        var first = extents[0];
        return new BlockStatus(offset, first.Length, first.IsZero ? BlockState.Zero : BlockState.Data, offset);
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
