using System.Buffers;
using Qed.Image;
using Qed.IO;

namespace Qed.Formats.Qcow2.Writer;

/// <summary>
/// A new qcow2 image written once, front to back: the target of <c>convert -O qcow2</c> (and, with nothing written, the
/// empty image of <c>create</c>). It accepts writes, write-zeroes and flushes from several writers at once, reads back what
/// it holds (for merges and tests), and reports its allocation; it never opens an existing qcow2 image.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>Allocation: cluster 0 is kept for the header. Every data cluster, and every compressed cluster's bytes (packed
/// back to back, QCOW2.md §5.5), is taken at the end of the file (<see cref="_end"/>) under <see cref="_lock"/>; the I/O
/// runs outside it. The L2 tables live in memory (one array per L1 entry that maps anything) until a flush.</item>
/// <item>Writes are split into units: the cluster, or the subcluster with extended L2 entries (the cluster when
/// compressing). Whole units take the fast path: map (allocating on first use), then one file write per run of
/// contiguous host clusters. A partial unit is merged under <see cref="_mergeGate"/>: what the unit reads now (zeros, the
/// backing file, the old bytes) with the new bytes, then written whole, so unwritten bytes never read as garbage.</item>
/// <item>Zeroes: whole units become unallocated (no backing file) or zero clusters/subclusters (over a backing file; version
/// 2 has no zero flag and writes real zeros there); partial units are written as zero bytes.</item>
/// <item>Flush (QCOW2.md §12.2): under the lock, lay out and serialize the metadata after everything allocated so far:
/// L2 tables, the L1 table, refcount blocks and the refcount table (their counts found by a fixed point); then write
/// them, sync, and write the header last and sync again. The refcounts are counted from the mapping at that moment, so a
/// cluster that a later write replaced, or the metadata of an earlier flush, is left at refcount 0: inside the file,
/// unreferenced and free, which <c>qemu-img check</c> accepts. Each flush leaves a complete, clean image.</item>
/// <item>Compressed clusters share host clusters; a host cluster never takes more sharers than the refcount width can
/// count (with 1-bit refcounts every compressed cluster starts a fresh host cluster).</item>
/// </list>
/// Concurrent writes to different clusters are safe; writes that merge partial units are serialized among themselves,
/// and a merge racing a plain write to the same cluster may keep either's bytes for that cluster (as with overlapping
/// requests). The copier never does either: its batches own whole clusters.
/// </remarks>
internal sealed partial class Qcow2TargetImage : BlockDevice
{
    private const ulong CopiedFlag = 1UL << 63;
    private const ulong CompressedFlag = 1UL << 62;
    private const ulong ZeroFlag = 1;
    private const ulong OffsetMask = 0x00FF_FFFF_FFFF_FE00;
    private const int Subclusters = 32;
    private const ulong AllSubclustersZero = 0xFFFF_FFFFUL << 32;
    // Zero writes as data (version 2 over a backing file) go out in pieces of this size: a multiple of every unit.
    private const int ZeroChunk = 2 * 1024 * 1024;
    private static readonly byte[] s_zeros = new byte[ZeroChunk];

    private readonly FileAccessor _file;
    private readonly Qcow2CreateSettings _settings;
    private readonly BlockDevice? _backing;
    private readonly bool _compress;
    private readonly int _clusterBits;
    private readonly long _clusterSize;
    private readonly long _unit;
    private readonly long _subclusterSize;
    private readonly bool _extended;
    private readonly long _refcountMax;

    private readonly object _lock = new();
    private readonly AsyncGate _mergeGate = new();
    // Per L1 index: the L2 table (entry, then bitmap when extended), or null while nothing under it is mapped. Under _lock.
    private readonly ulong[]?[] _l2;
    // The next free byte of the file. Under _lock.
    private long _end;
    // The host cluster holding the last compressed bytes when _end is inside it, and how many compressed clusters touch it. Under _lock.
    private long _tailCluster = -1;
    private long _tailSharers;
    // True when something changed since the last flush wrote the metadata. Under _lock.
    private bool _dirty = true;

    private Qcow2TargetImage(FileAccessor file, Qcow2CreateSettings settings, BlockDevice? backing, bool compress)
    {
        _file = file;
        _settings = settings;
        _backing = backing;
        _compress = compress;
        _clusterBits = settings.ClusterBits;
        _clusterSize = settings.ClusterSize;
        _extended = settings.ExtendedL2;
        _subclusterSize = _clusterSize / Subclusters;
        _unit = _extended && !compress ? _subclusterSize : _clusterSize;
        _refcountMax = settings.RefcountBits == 64 ? long.MaxValue : (1L << settings.RefcountBits) - 1;
        _l2 = new ulong[]?[settings.L1Size];
        _end = _clusterSize;
    }

    /// <summary>
    /// Creates (or empties) <paramref name="path"/> and returns the image to write; nothing is on disk until the first
    /// flush. The image owns <paramref name="backing"/> (the device the backing file opens as, or null) and closes it.
    /// </summary>
    /// <param name="path">The file to create.</param>
    /// <param name="settings">What the image is made of.</param>
    /// <param name="backing">The opened backing file, or null.</param>
    /// <param name="compress">Store every written cluster compressed (with <see cref="Qcow2CreateSettings.CompressionType"/>) when that makes it smaller.</param>
    /// <exception cref="QedLockException">Another process uses the file.</exception>
    public static Qcow2TargetImage Create(string path, Qcow2CreateSettings settings, BlockDevice? backing, bool compress)
    {
        ArgumentNullException.ThrowIfNull(settings);
        return new Qcow2TargetImage(HandleFileAccessor.Create(path), settings, backing, compress);
    }

    /// <summary>Wraps an already created empty file (tests inject faults through it).</summary>
    internal static Qcow2TargetImage Create(FileAccessor file, Qcow2CreateSettings settings, BlockDevice? backing, bool compress) =>
        new(file, settings, backing, compress);

    public override long Size => _settings.Size;

    public override bool IsReadOnly => false;

    public override string FormatName => ImageFormats.Qcow2.Name;

    public override string FileName => _file.Path;

    public override BlockDevice? Backing => _backing;

    public override BlockDeviceCapabilities Capabilities =>
        BlockDeviceCapabilities.Write | BlockDeviceCapabilities.ZeroFast | BlockDeviceCapabilities.Extents;

    /// <summary>What the image is made of.</summary>
    public Qcow2CreateSettings Settings => _settings;

    /// <summary>True when written clusters are stored compressed (where that makes them smaller).</summary>
    public bool Compresses => _compress;

    /// <summary>The smallest range a write can allocate: the subcluster with extended L2 entries (unless compressing), else the cluster.</summary>
    public long AllocationUnit => _unit;

    protected internal override async ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        long end = offset + source.Length;
        long position = offset;
        while (position < end)
        {
            long unitStart = position & ~(_unit - 1);
            long unitEnd = Math.Min(unitStart + _unit, Size);
            if (position == unitStart && end >= unitEnd)
            {
                long wholeEnd = end == Size ? end : end & ~(_unit - 1);
                await WriteWholeUnitsAsync(source.Slice((int)(position - offset), (int)(wholeEnd - position)), position, useAsync, cancellationToken).ConfigureAwait(false);
                position = wholeEnd;
            }
            else
            {
                long pieceEnd = Math.Min(end, unitEnd);
                await MergeAsync(source.Slice((int)(position - offset), (int)(pieceEnd - position)), position, unitStart, unitEnd, useAsync, cancellationToken).ConfigureAwait(false);
                position = pieceEnd;
            }
        }
    }

    protected internal override async ValueTask WriteZeroesCoreAsync(long offset, long length, bool mayUnmap, bool useAsync, CancellationToken cancellationToken)
    {
        long end = offset + length;
        long position = offset;
        while (position < end)
        {
            long unitStart = position & ~(_unit - 1);
            long unitEnd = Math.Min(unitStart + _unit, Size);
            if (position == unitStart && end >= unitEnd)
            {
                long wholeEnd = end == Size ? end : end & ~(_unit - 1);
                if (!ZeroWholeUnits(position, wholeEnd))
                {
                    // Version 2 over a backing file: no zero flag, so the zeros are written as data.
                    for (long at = position; at < wholeEnd; at += ZeroChunk)
                    {
                        int n = (int)Math.Min(ZeroChunk, wholeEnd - at);
                        await WriteWholeUnitsAsync(s_zeros.AsMemory(0, n), at, useAsync, cancellationToken).ConfigureAwait(false);
                    }
                }
                position = wholeEnd;
            }
            else
            {
                long pieceEnd = Math.Min(end, unitEnd);
                await MergeAsync(s_zeros.AsMemory(0, (int)(pieceEnd - position)), position, unitStart, unitEnd, useAsync, cancellationToken).ConfigureAwait(false);
                position = pieceEnd;
            }
        }
    }

    protected internal override async ValueTask FlushCoreAsync(bool useAsync, CancellationToken cancellationToken)
    {
        var metadata = PrepareMetadata();
        if (metadata is not null)
        {
            try
            {
                await WriteMetadataAsync(metadata, useAsync, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                // The header still names the previous flush's tables (or nothing): the next flush writes everything again.
                lock (_lock)
                {
                    _dirty = true;
                }
                throw;
            }
        }
        else
        {
            await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
        }
    }

    protected override async ValueTask CloseCoreAsync(bool useAsync)
    {
        try
        {
            // An image closed without a flush still gets its metadata, so it is complete whenever it is closed normally.
            await FlushCoreAsync(useAsync, CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            _file.Dispose();
            _mergeGate.Dispose();
            if (_backing is not null)
            {
                if (useAsync)
                {
                    await _backing.DisposeAsync().ConfigureAwait(false);
                }
                else
                {
                    _backing.Dispose();
                }
            }
        }
    }

    /// <summary>Writes whole units (the last one may end at the end of the disk) starting at the unit boundary <paramref name="offset"/>.</summary>
    private async ValueTask WriteWholeUnitsAsync(ReadOnlyMemory<byte> data, long offset, bool useAsync, CancellationToken cancellationToken)
    {
        if (_compress)
        {
            await WriteCompressedClustersAsync(data, offset, useAsync, cancellationToken).ConfigureAwait(false);
            return;
        }
        // Map under the lock, collecting runs of contiguous host bytes; write them outside it.
        var runs = new List<(long Host, int Start, int Length)>();
        lock (_lock)
        {
            long end = offset + data.Length;
            for (long position = offset; position < end;)
            {
                long inCluster = position & (_clusterSize - 1);
                int n = (int)Math.Min(_clusterSize - inCluster, end - position);
                long host = MapForWriteUnsynchronized(position >> _clusterBits, inCluster, n) + inCluster;
                int start = (int)(position - offset);
                if (runs.Count > 0 && runs[^1].Host + runs[^1].Length == host && runs[^1].Start + runs[^1].Length == start)
                {
                    runs[^1] = (runs[^1].Host, runs[^1].Start, runs[^1].Length + n);
                }
                else
                {
                    runs.Add((host, start, n));
                }
                position += n;
            }
            _dirty = true;
        }
        foreach (var (host, start, length) in runs)
        {
            await _file.WriteAsync(data.Slice(start, length), host, useAsync, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The host cluster that takes <paramref name="length"/> bytes at <paramref name="inCluster"/> of guest cluster <paramref name="cluster"/> (whole units), allocated on first use.</summary>
    private long MapForWriteUnsynchronized(long cluster, long inCluster, int length)
    {
        var (table, index) = TableForWriteUnsynchronized(cluster);
        ulong entry = table[index];
        long host = (entry & CompressedFlag) != 0 ? 0 : (long)(entry & OffsetMask);
        if (host == 0)
        {
            host = AllocateClustersUnsynchronized(1);
        }
        table[index] = (ulong)host;
        if (_extended)
        {
            int first = (int)(inCluster / _subclusterSize);
            int count = (int)((length + _subclusterSize - 1) / _subclusterSize);
            ulong mask = (count == Subclusters ? uint.MaxValue : (1UL << count) - 1) << first;
            ulong bitmap = table[index + 1];
            // Allocated now, no longer zero; an untouched subcluster of a new cluster keeps reading from below.
            table[index + 1] = (bitmap | mask) & ~(mask << Subclusters);
        }
        return host;
    }

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>, part of the unit [<paramref name="unitStart"/>, <paramref name="unitEnd"/>): what the unit reads now, with the new bytes over it, written whole.</summary>
    private async ValueTask MergeAsync(ReadOnlyMemory<byte> data, long offset, long unitStart, long unitEnd, bool useAsync, CancellationToken cancellationToken)
    {
        int length = (int)(unitEnd - unitStart);
        byte[] unit = ArrayPool<byte>.Shared.Rent(length);
        await _mergeGate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            await ReadCoreAsync(unit.AsMemory(0, length), unitStart, useAsync, cancellationToken).ConfigureAwait(false);
            data.Span.CopyTo(unit.AsSpan((int)(offset - unitStart)));
            await WriteWholeUnitsAsync(unit.AsMemory(0, length), unitStart, useAsync, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _mergeGate.Exit();
            ArrayPool<byte>.Shared.Return(unit);
        }
    }

    /// <summary>Makes whole units read as zeros through the mapping alone; false when that cannot be done (version 2 over a backing file).</summary>
    private bool ZeroWholeUnits(long offset, long end)
    {
        bool zeroFlag = _settings.Version >= 3;
        bool below = _backing is not null;
        if (below && !zeroFlag)
        {
            return false;
        }
        lock (_lock)
        {
            for (long position = offset; position < end;)
            {
                long cluster = position >> _clusterBits;
                long inCluster = position & (_clusterSize - 1);
                long n = Math.Min(_clusterSize - inCluster, end - position);
                int l1 = (int)(cluster / _settings.L2Entries);
                if (_l2[l1] is null && !below)
                {
                    // Nothing mapped under this L1 entry and nothing below: it reads zeros already.
                    position = Math.Min(end, (l1 + 1L) * _settings.L2Span);
                    continue;
                }
                var (table, index) = TableForWriteUnsynchronized(cluster);
                if (_extended && !_compress && (inCluster != 0 || n < _clusterSize) && (table[index] & CompressedFlag) == 0)
                {
                    int first = (int)(inCluster / _subclusterSize);
                    int count = (int)((n + _subclusterSize - 1) / _subclusterSize);
                    ulong mask = (count == Subclusters ? uint.MaxValue : (1UL << count) - 1) << first;
                    ulong bitmap = table[index + 1] & ~mask;
                    bitmap = below ? bitmap | (mask << Subclusters) : bitmap & ~(mask << Subclusters);
                    // A cluster with no allocated subcluster left is given back (it becomes unreferenced).
                    table[index] = (bitmap & uint.MaxValue) == 0 ? 0 : table[index];
                    table[index + 1] = bitmap;
                }
                else
                {
                    table[index] = below && !_extended ? ZeroFlag : 0;
                    if (_extended)
                    {
                        table[index + 1] = below ? AllSubclustersZero : 0;
                    }
                }
                position += n;
            }
            _dirty = true;
        }
        return true;
    }

    /// <summary>The L2 table (allocated in memory on first use) and the index of the entry of guest cluster <paramref name="cluster"/>.</summary>
    private (ulong[] Table, int Index) TableForWriteUnsynchronized(long cluster)
    {
        int l1 = (int)(cluster / _settings.L2Entries);
        int index = (int)(cluster % _settings.L2Entries) * (_extended ? 2 : 1);
        var table = _l2[l1] ??= new ulong[_settings.L2Entries * (_extended ? 2 : 1)];
        return (table, index);
    }

    /// <summary>Takes <paramref name="count"/> whole clusters at the end of the file.</summary>
    private long AllocateClustersUnsynchronized(int count)
    {
        long start = (_end + _clusterSize - 1) & ~(_clusterSize - 1);
        _end = start + count * _clusterSize;
        _tailCluster = -1;
        return start;
    }

    /// <summary>The entry (and bitmap) of guest cluster <paramref name="cluster"/>.</summary>
    private (ulong Entry, ulong Bitmap) Entry(long cluster)
    {
        lock (_lock)
        {
            var table = _l2[cluster / _settings.L2Entries];
            if (table is null)
            {
                return (0, 0);
            }
            int index = (int)(cluster % _settings.L2Entries) * (_extended ? 2 : 1);
            return (table[index], _extended ? table[index + 1] : 0);
        }
    }

    /// <summary>Lays out and serializes the metadata of everything mapped so far (under the lock), or returns null when nothing changed since the last flush.</summary>
    private Qcow2Metadata? PrepareMetadata()
    {
        lock (_lock)
        {
            if (!_dirty)
            {
                return null;
            }
            var metadata = Qcow2Metadata.Build(_settings, _l2, _end);
            _end = metadata.End;
            _tailCluster = -1;
            _dirty = false;
            return metadata;
        }
    }

    /// <summary>Writes the tables, syncs, then writes the header and syncs again: until the header lands the file is no qcow2 image at all, never a wrong one.</summary>
    private async ValueTask WriteMetadataAsync(Qcow2Metadata metadata, bool useAsync, CancellationToken cancellationToken)
    {
        foreach (var (offset, bytes) in metadata.Pieces)
        {
            await _file.WriteAsync(bytes, offset, useAsync, cancellationToken).ConfigureAwait(false);
        }
        await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
        await _file.WriteAsync(metadata.Header, 0, useAsync, cancellationToken).ConfigureAwait(false);
        await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
    }
}
