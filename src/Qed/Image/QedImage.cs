using System.Buffers;
using System.Runtime.CompilerServices;
using Qed.Extents;
using Qed.Format;
using Qed.Formats;
using Qed.IO;
using Qed.Tables;

namespace Qed.Image;

/// <summary>
/// An open QED image: reads and writes of the virtual disk, mapped through the L1 table and cached L2
/// tables onto the image file, falling through to the backing chain where nothing is allocated.
/// </summary>
/// <remarks>
/// Write ordering (QED-FORMAT.md §5.2, §5.6), for one allocating run of k clusters:
/// <list type="number">
/// <item>Under the allocation lock, look the run up again (another request may have allocated it).</item>
/// <item>Reserve k clusters at the end of the file (the allocation pointer only grows).</item>
/// <item>Without a backing file, set the need-check bit and flush it before the first allocation, so that
/// a crash after any later step is caught by the next writable open.</item>
/// <item>Write the clusters: the untouched head and tail copied from the backing chain (zeros where the
/// cluster was a zero cluster or there is no backing file) and the payload.</item>
/// <item>With a backing file, flush: no table entry may point at a cluster whose copied-up part is not
/// yet stable, or a crash would replace backing data with zeros. Flush too when the clusters reuse the partial last
/// cluster an earlier crash left (the pointer rounds the length down): its old bytes are on disk, so unlike space past
/// the end of the file it would not read as zeros if the entry landed before the data (QEMU does not flush here).</item>
/// <item>If the L2 table exists, write the changed 512-byte blocks of it (from a patched copy, so the
/// cache changes only once the disk did). Otherwise reserve a new table after the data, write it whole,
/// flush, publish it in the cache, then write the L1 block that points at it.</item>
/// </list>
/// A crash between any two steps leaves at worst leaked clusters, never an entry pointing at garbage.
/// The parts: <see cref="HeaderState"/> (header snapshot and its rewrites), <see cref="SliceMap"/> (mapping and
/// validation), <see cref="ClusterAllocator"/> (allocation pointer and stripes), <see cref="TableUpdater"/> (table
/// block updates, steps 6), QedImage.CopyUp.cs (step 4), QedImage.Open.cs and QedImage.Check.cs.
/// Locking: allocations take the gate of their L2 table's stripe (by L1 index), so allocations under
/// different tables run concurrently while two requests for one table serialize and the second looks up
/// again; the allocation pointer moves atomically; L1 block updates and header rewrites each have their own
/// gate, since two tables' L1 entries can share a 512-byte block. Reads and in-place writes take no lock:
/// entries are read atomically, and an entry only ever changes from "not allocated" to a cluster whose data
/// is already written, after its table block reached the file. That is enough: a completed write is visible
/// to every later read, no entry points at unwritten data, and no two allocations share a cluster.
/// Failures: a failed or torn write fails its request only (what it reserved leaks; the cache changes only after the
/// disk did). A failed flush is different: the kernel may have dropped the unwritten pages, so from then on every flush
/// fails with it as the cause (<see cref="FlushFailureLatch"/>): <see cref="BlockDevice.Flush"/>, allocations that must
/// order data before metadata, and the close, which therefore leaves the need-check bit set. Reads and in-place writes
/// keep working.
/// Write-zeroes and discard never drop a mapping (QED keeps no free-space map, so a dropped cluster would only leak):
/// allocated clusters are zeroed in place or, where unmapping is allowed, become holes in the file; unallocated
/// clusters over a backing file become zero clusters under the allocation gate, like an allocation without data.
/// Resize (QedImage.Resize.cs, QedImage.Shrink.cs) rewrites the header through <see cref="HeaderState"/>, so a request
/// sees either the old size or the new one.
/// </remarks>
public sealed partial class QedImage : BlockDevice
{
    private const int CombinedWriteLimit = 1 << 20;

    private readonly FileAccessor _file;
    private readonly QedGeometry _geometry;
    private readonly HeaderState _headerState;
    private readonly ClusterAllocator _space;
    private readonly SliceMap _map;
    private readonly TableUpdater _tables;
    /// <summary>Serializes resizes (QedImage.Resize.cs).</summary>
    private readonly AsyncGate _resizeGate = new();
    private BlockDevice? _backing;
    /// <summary>True once this session set the need-check bit: the close clears it again.</summary>
    private bool _setNeedCheck;
    /// <summary>Write-zeroes makes zero clusters even without a backing file (<see cref="ImageOpenOptions.ZeroClustersWithoutBacking"/>).</summary>
    private readonly bool _zeroClustersWithoutBacking;

    private QedImage(FileAccessor file, QedHeader header, QedGeometry geometry, byte[] l1, ImageOpenOptions options, string? backingName)
    {
        _file = file;
        _geometry = geometry;
        _headerState = new HeaderState(file, header);
        _space = new ClusterAllocator(geometry, file.Path, file.GetLength());
        _map = new SliceMap(file, geometry, (ulong)header.HeaderSize * header.ClusterSize, l1, _space, options);
        _tables = new TableUpdater(file, geometry, _map, _space, (long)header.L1TableOffset);
        BackingFileName = backingName;
        _zeroClustersWithoutBacking = options.ZeroClustersWithoutBacking;
    }

    /// <summary>The header as it is now on disk.</summary>
    internal QedHeader Header => _headerState.Current.Header;

    /// <summary>Cluster and table geometry.</summary>
    internal QedGeometry Geometry => _geometry;

    /// <summary>The backing file name as stored in the header (up to its first NUL byte, as QEMU reads it), or null when there is none.</summary>
    public string? BackingFileName { get; private set; }

    /// <summary>True when the header names a backing file (a name that is not empty up to its first NUL byte, as QEMU reads it).</summary>
    private bool NamesBackingFile => BackingFileName is not null;

    /// <summary>The backing file name resolved against this image's directory, or null.</summary>
    public string? BackingFilePath { get; private set; }

    /// <summary><c>raw</c> when the header says the backing file is raw (the no-probe bit), else null (the format is probed).</summary>
    public string? BackingFormat => BackingFileName is not null && (Header.Features & QedFeatures.BackingFormatNoProbe) != 0 ? ImageFormats.Raw.Name : null;

    /// <summary>The current end of the allocated area: the file length as QEMU counts it (rounded up to a 512-byte sector, then down to a cluster), plus what this session allocated.</summary>
    internal long AllocationEnd => _space.End;

    internal L2TableCache Cache => _map.Cache;

    /// <summary>Counters of the L2 table cache.</summary>
    public L2CacheStatistics CacheStatistics
    {
        get
        {
            var cache = _map.Cache;
            return new(cache.Hits, cache.Misses, cache.Evictions, cache.Count, cache.Capacity, _map.SliceBytes);
        }
    }

    /// <inheritdoc />
    public override long Size => _headerState.Current.Size;

    /// <inheritdoc />
    public override bool IsReadOnly => _file.IsReadOnly;

    /// <inheritdoc />
    public override string FormatName => ImageFormats.Qed.Name;

    /// <inheritdoc />
    public override string FileName => _file.Path;

    /// <inheritdoc />
    public override BlockDevice? Backing => _backing;

    /// <inheritdoc />
    public override BlockDeviceCapabilities Capabilities => IsReadOnly
        ? BlockDeviceCapabilities.Extents
        : BlockDeviceCapabilities.Write | BlockDeviceCapabilities.ZeroFast | BlockDeviceCapabilities.Discard | BlockDeviceCapabilities.Grow | BlockDeviceCapabilities.Shrink | BlockDeviceCapabilities.Extents;

    // ---- reads ----

    /// <inheritdoc />
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected internal override async ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        while (!destination.IsEmpty)
        {
            var piece = await _map.MapAsync(offset, destination.Length, useAsync, cancellationToken).ConfigureAwait(false);
            var part = destination[..(int)piece.Length];
            switch (piece.State)
            {
                case BlockState.Data:
                    await _file.ReadZeroPaddedAsync(part, piece.HostOffset, useAsync, cancellationToken).ConfigureAwait(false);
                    break;
                case BlockState.Zero:
                    part.Span.Clear();
                    break;
                default:
                    await ReadBackingAsync(part, offset, useAsync, cancellationToken).ConfigureAwait(false);
                    break;
            }
            offset += piece.Length;
            destination = destination[(int)piece.Length..];
        }
    }

    /// <summary>What lies beneath this layer: the backing chain, zeros where it has nothing (the one rule, shared with the extent map).</summary>
    private ValueTask ReadBackingAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken) =>
        FallThrough.ReadAsync(_backing, destination, offset, useAsync, cancellationToken);

    /// <inheritdoc />
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    protected internal override async ValueTask<BlockStatus> GetStatusCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        var piece = await _map.MapAsync(offset, length, useAsync, cancellationToken).ConfigureAwait(false);
        return new BlockStatus(offset, piece.Length, piece.State, piece.HostOffset);
    }

    // ---- writes ----

    /// <inheritdoc />
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected internal override async ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        while (!source.IsEmpty)
        {
            var piece = await _map.MapAsync(offset, source.Length, useAsync, cancellationToken).ConfigureAwait(false);
            int done;
            if (piece.State == BlockState.Data)
            {
                done = (int)piece.Length;
                await _file.WriteAsync(source[..done], piece.HostOffset, useAsync, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                done = await AllocatingWriteAsync(source, offset, useAsync, cancellationToken).ConfigureAwait(false);
            }
            offset += done;
            source = source[done..];
        }
    }

    /// <summary>Allocates the run of unallocated or zero clusters at <paramref name="offset"/> (up to the end of its L2 table, contiguous in the file as QEMU lays it out) and writes the payload into it; returns the bytes written, 0 when the cluster turned out to be allocated meanwhile.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> AllocatingWriteAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        var stripe = _space.StripeFor(offset);
        await stripe.Gate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
        var slices = stripe.Slices;
        try
        {
            // Steps 1-6 of the write ordering above.
            int inCluster = _geometry.OffsetInCluster(offset);
            long pieceLength = Math.Min(source.Length, _map.RoomInTable(offset));
            int wanted = (int)_geometry.ClustersFor(inCluster + pieceLength);
            ulong tableOffset = _map.ValidatedTableOffset(offset);
            var run = (Count: wanted, FirstState: TableEntry.Unallocated, LastState: TableEntry.Unallocated);
            if (tableOffset != 0)
            {
                run = await _map.CollectRunAsync(tableOffset, offset, wanted, unallocatedOnly: false, slices, useAsync, cancellationToken).ConfigureAwait(false);
                if (run.Count == 0)
                {
                    return 0;
                }
            }

            int length = (int)Math.Min(pieceLength, ((long)run.Count << _geometry.ClusterBits) - inCluster);
            long clusters = _space.Reserve((long)run.Count << _geometry.ClusterBits);
            await MarkNeedCheckAsync(useAsync, cancellationToken).ConfigureAwait(false);
            await WriteNewClustersAsync(clusters, offset, source[..length], run.Count, run.FirstState, run.LastState, useAsync, cancellationToken).ConfigureAwait(false);
            if (NamesBackingFile || _space.IsStale(clusters))
            {
                await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
            }
            await _tables.SetEntriesAsync(tableOffset, slices, offset, run.Count, (ulong)clusters, (ulong)_geometry.ClusterSize, useAsync, cancellationToken).ConfigureAwait(false);
            return length;
        }
        finally
        {
            _map.ReleaseAll(slices);
            stripe.Gate.Exit();
        }
    }


    /// <inheritdoc />
    protected internal override async ValueTask WriteZeroesCoreAsync(long offset, long length, bool mayUnmap, bool useAsync, CancellationToken cancellationToken)
    {
        while (length > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int inCluster = _geometry.OffsetInCluster(offset);
            long done;
            if (inCluster != 0 || length < _geometry.ClusterSize)
            {
                // A partial cluster cannot become a zero cluster: write real zeros through the normal path.
                done = Math.Min(length, _geometry.ClusterSize - inCluster);
                await WriteZeroBytesAsync(offset, done, useAsync, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                var piece = await _map.MapAsync(offset, length & ~_geometry.ClusterMask, useAsync, cancellationToken).ConfigureAwait(false);
                done = piece.Length;
                if (piece.State == BlockState.Data)
                {
                    // The clusters stay allocated, as QEMU keeps them (QED-FORMAT.md §5.5): zeroed in the file, or, when the
                    // caller allows unmapping, turned into a hole there. Dropping the entry instead would only leak the
                    // cluster, since QED cannot reuse space in the middle of the file.
                    await _file.ZeroRangeAsync(piece.HostOffset, done, mayUnmap, useAsync, cancellationToken).ConfigureAwait(false);
                }
                else if (piece.State == BlockState.Unallocated && (NamesBackingFile || _zeroClustersWithoutBacking))
                {
                    done = await MarkZeroClustersAsync(offset, done, useAsync, cancellationToken).ConfigureAwait(false);
                }
                // Zero clusters already read as zeros, and so does unallocated space without a backing file.
            }
            offset += done;
            length -= done;
        }
    }

    /// <inheritdoc />
    /// <remarks>Whole allocated clusters in the range become holes in the file (they then read as zeros); the mapping stays,
    /// so no range ever shows backing data again. Partial clusters, zero and unallocated clusters are left as they are.</remarks>
    protected internal override async ValueTask DiscardCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        long start = _geometry.AlignUp(offset);
        long end = _geometry.AlignDown(offset + length);
        while (start < end)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var piece = await _map.MapAsync(start, end - start, useAsync, cancellationToken).ConfigureAwait(false);
            if (piece.State == BlockState.Data)
            {
                await _file.ZeroRangeAsync(piece.HostOffset, piece.Length, deallocate: true, useAsync, cancellationToken).ConfigureAwait(false);
            }
            start += piece.Length;
        }
    }

    /// <summary>Sets the need-check bit before the first allocation of a session without backing file (step 3).</summary>
    private async ValueTask MarkNeedCheckAsync(bool useAsync, CancellationToken cancellationToken)
    {
        if (NamesBackingFile || _headerState.Current.NeedsCheck)
        {
            return;
        }
        // Flushed before the first allocation (QEMU does not flush here: QED-FORMAT.md §5.6).
        if (await _headerState.UpdateAsync(static h => h with { Features = h.Features | QedFeatures.NeedCheck }, useAsync, cancellationToken).ConfigureAwait(false))
        {
            _setNeedCheck = true;
        }
    }

    // ---- flush and close ----

    /// <inheritdoc />
    protected internal override ValueTask FlushCoreAsync(bool useAsync, CancellationToken cancellationToken) =>
        IsReadOnly ? ValueTask.CompletedTask : _file.FlushAsync(useAsync, cancellationToken);

    /// <inheritdoc />
    protected override async ValueTask CloseCoreAsync(bool useAsync)
    {
        try
        {
            if (!IsReadOnly)
            {
                await _file.FlushAsync(useAsync, CancellationToken.None).ConfigureAwait(false);
                if (_setNeedCheck)
                {
                    // Everything this session wrote is stable: the metadata is consistent again.
                    await _headerState.UpdateAsync(static h => h with { Features = h.Features & ~QedFeatures.NeedCheck }, useAsync, CancellationToken.None).ConfigureAwait(false);
                }
            }
        }
        finally
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
                // A writable backing file (commit's base) can fail its close; this file is released all the same.
                _file.Dispose();
                _space.Dispose();
                _tables.Dispose();
                _headerState.Dispose();
                _resizeGate.Dispose();
            }
        }
    }
}
