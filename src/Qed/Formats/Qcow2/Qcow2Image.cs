using System.Buffers;
using System.Runtime.CompilerServices;
using Qed.Extents;
using Qed.Formats.Qcow2.Compression;
using Qed.IO;
using Qed.Tables;

namespace Qed.Formats.Qcow2;

/// <summary>
/// An open qcow2 image, read-only (QCOW2.md §6): reads of the virtual disk mapped through the active L1 table and the
/// cached L2 tables (<see cref="Qcow2Mapping"/>) onto the image file or its external data file, inflating compressed
/// clusters, falling through to the backing chain where nothing is allocated. Snapshots and refcounts play no part.
/// </summary>
/// <remarks>
/// qcow2 never opens writable here: every change is refused by <see cref="BlockDevice"/> (<see cref="IsReadOnly"/>).
/// Requests run concurrently without a lock of their own: the tables never change, the cache has its lock, and the last
/// inflated cluster is swapped in as an immutable object. Opening: Qcow2Image.Open.cs.
/// </remarks>
internal sealed partial class Qcow2Image : BlockDevice
{
    private readonly FileAccessor _file;
    private readonly FileAccessor? _dataFile;
    private readonly Qcow2Mapping _map;
    private readonly Qcow2CompressionType _compression;
    private BlockDevice? _backing;
    /// <summary>The compressed cluster inflated last, so that reads of its parts inflate it once.</summary>
    private volatile InflatedCluster? _lastInflated;

    private Qcow2Image(FileAccessor file, FileAccessor? dataFile, Qcow2Header header, Qcow2Extensions extensions, Qcow2SnapshotTable snapshots, Qcow2Mapping map, string? backingName)
    {
        _file = file;
        _dataFile = dataFile;
        _map = map;
        _compression = (Qcow2CompressionType)header.CompressionType;
        Header = header;
        Extensions = extensions;
        Snapshots = snapshots;
        BackingFileName = backingName;
    }

    /// <summary>The image file (header, tables; and the data unless an external data file holds it).</summary>
    internal FileAccessor File => _file;

    /// <summary>The header as read and validated at open.</summary>
    internal Qcow2Header Header { get; }

    /// <summary>The header extensions.</summary>
    internal Qcow2Extensions Extensions { get; }

    /// <summary>The snapshot table (empty when not read: a check open skips it).</summary>
    internal Qcow2SnapshotTable Snapshots { get; }

    /// <summary>The LUKS header (for <c>info</c>), or null when the image has none or it was not read.</summary>
    internal byte[]? LuksHeader { get; private init; }

    /// <summary>The persistent bitmaps (for <c>info</c>).</summary>
    internal IReadOnlyList<Qcow2BitmapEntry> Bitmaps { get; private init; } = [];

    /// <summary>True when guest data lives in an external data file (incompatible bit 2).</summary>
    internal bool HasExternalData => (Header.IncompatibleFeatures & Qcow2IncompatibleFeatures.ExternalDataFile) != 0;

    /// <summary>The external data file when it was opened (never for metadata-only opens), else null.</summary>
    internal FileAccessor? DataFile => _dataFile;

    /// <summary>qemu-img map names the external data file, as stored, for the data it holds.</summary>
    internal override string HostFileName => HasExternalData && Extensions.DataFileName is { } name ? name : FileName;

    /// <summary>The backing file name as stored, or null.</summary>
    internal string? BackingFileName { get; }

    /// <summary>The backing file name resolved against this image's directory, or null.</summary>
    internal string? BackingFilePath { get; private init; }

    /// <summary>The backing format the image records, or null (probed).</summary>
    internal string? BackingFormat => BackingFileName is null ? null : Extensions.BackingFormat is { Length: > 0 } format ? format : null;

    /// <summary>The L2 cache.</summary>
    internal L2TableCache Cache => _map.Cache;

    /// <summary>Counters of the L2 cache.</summary>
    internal L2CacheStatistics CacheStatistics =>
        new(Cache.Hits, Cache.Misses, Cache.Evictions, Cache.Count, Cache.Capacity, _map.SliceBytes);

    /// <summary>Guest bytes one L2 table maps.</summary>
    internal long L2TableSpan => _map.L2Span;

    /// <inheritdoc />
    public override long Size => (long)Header.Size;

    /// <inheritdoc />
    public override bool IsReadOnly => true;

    /// <inheritdoc />
    public override string FormatName => ImageFormats.Qcow2.Name;

    /// <inheritdoc />
    public override string FileName => _file.Path;

    /// <inheritdoc />
    public override BlockDevice? Backing => _backing;

    /// <inheritdoc />
    public override BlockDeviceCapabilities Capabilities => BlockDeviceCapabilities.Extents;

    /// <inheritdoc />
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected internal override async ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        while (!destination.IsEmpty)
        {
            var piece = await _map.MapAsync(offset, destination.Length, useAsync, cancellationToken).ConfigureAwait(false);
            var part = destination[..(int)piece.Length];
            switch (piece.Kind)
            {
                case Qcow2PieceKind.Data when HasExternalData && _dataFile is null:
                    throw new QedUnsupportedException($"'{FileName}': its external data file is not open (the image was opened for its metadata only)");
                case Qcow2PieceKind.Data:
                    // Past the end of the file reads as zeros, as in QEMU.
                    await (_dataFile ?? _file).ReadZeroPaddedAsync(part, piece.HostOffset, useAsync, cancellationToken).ConfigureAwait(false);
                    break;
                case Qcow2PieceKind.Zero:
                    part.Span.Clear();
                    break;
                case Qcow2PieceKind.Compressed:
                    await ReadCompressedAsync(part, piece.Entry, offset & (Header.ClusterSize - 1), useAsync, cancellationToken).ConfigureAwait(false);
                    break;
                default:
                    await FallThrough.ReadAsync(_backing, part, offset, useAsync, cancellationToken).ConfigureAwait(false);
                    break;
            }
            offset += piece.Length;
            destination = destination[(int)piece.Length..];
        }
    }

    /// <summary>Inflates the compressed cluster <paramref name="entry"/> describes (or takes the last one inflated) and copies the part at <paramref name="inCluster"/>.</summary>
    private async ValueTask ReadCompressedAsync(Memory<byte> destination, ulong entry, long inCluster, bool useAsync, CancellationToken cancellationToken)
    {
        var inflated = _lastInflated;
        if (inflated is null || inflated.Entry != entry)
        {
            var descriptor = Qcow2CompressedDescriptor.Decode(entry, (int)Header.ClusterBits);
            byte[] input = ArrayPool<byte>.Shared.Rent(descriptor.Length);
            try
            {
                // A span past the end of the file reads as zeros, which do not inflate: the read fails, as in QEMU.
                await _file.ReadZeroPaddedAsync(input.AsMemory(0, descriptor.Length), (long)descriptor.HostOffset, useAsync, cancellationToken).ConfigureAwait(false);
                byte[] cluster = new byte[Header.ClusterSize];
                Qcow2Compression.Decompress(_compression, input.AsSpan(0, descriptor.Length), cluster);
                inflated = new InflatedCluster(entry, cluster);
                _lastInflated = inflated;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(input);
            }
        }
        inflated.Data.AsMemory((int)inCluster, destination.Length).CopyTo(destination);
    }

    /// <inheritdoc />
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    protected internal override async ValueTask<BlockStatus> GetStatusCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        var piece = await _map.MapAsync(offset, length, useAsync, cancellationToken).ConfigureAwait(false);
        var state = piece.Kind switch
        {
            // A compressed cluster is data without a place in the file one could read it from (qemu-img map: no offset).
            Qcow2PieceKind.Data or Qcow2PieceKind.Compressed => BlockState.Data,
            Qcow2PieceKind.Zero => BlockState.Zero,
            _ => BlockState.Unallocated,
        };
        return new BlockStatus(offset, piece.Length, state, piece.HostOffset);
    }

    /// <inheritdoc />
    protected internal override ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken) =>
        throw ReadOnly();

    /// <inheritdoc />
    protected internal override ValueTask WriteZeroesCoreAsync(long offset, long length, bool mayUnmap, bool useAsync, CancellationToken cancellationToken) =>
        throw ReadOnly();

    /// <inheritdoc />
    protected internal override ValueTask FlushCoreAsync(bool useAsync, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <inheritdoc />
    protected override async ValueTask CloseCoreAsync(bool useAsync)
    {
        try
        {
            if (_backing is not null)
            {
                await _backing.DisposeAsync(useAsync).ConfigureAwait(false);
            }
        }
        finally
        {
            _dataFile?.Dispose();
            _file.Dispose();
        }
    }

    /// <summary>Makes <paramref name="backing"/> the device unallocated ranges fall through to; the image disposes it.</summary>
    internal void AttachBacking(BlockDevice backing) => _backing = backing;

    // BlockDevice refuses changes to a read-only device before they get here.
    private QedReadOnlyException ReadOnly() => new($"'{FileName}' is open read-only");

    /// <summary>One inflated compressed cluster: its L2 entry and its bytes (never changed once published).</summary>
    private sealed record InflatedCluster(ulong Entry, byte[] Data);
}
