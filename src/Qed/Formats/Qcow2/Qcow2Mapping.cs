using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Qed.Image;
using Qed.IO;
using Qed.Tables;

namespace Qed.Formats.Qcow2;

/// <summary>
/// Guest offsets of a qcow2 image to what they read as (QCOW2.md §6): the active L1 table in memory, L2 tables through
/// the shared <see cref="L2TableCache"/> in slices, every entry classified and its offset checked before it is used.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>The L1 entry of an offset names its L2 table; 0 means no table, and the whole range it covers (with the
/// following entries that are 0 too) is one unallocated piece, never read.</item>
/// <item>An L2 table offset that is not cluster aligned fails the request (QEMU's message). Tables, like everything
/// else, may lie beyond the end of the file: they read as zeros (QCOW2.md §2.5).</item>
/// <item>The cache holds slices of L2 tables (<see cref="ImageOpenOptions.L2SliceSize"/>, at most a cluster), so a miss
/// reads only the part it needs; a piece never crosses the end of its slice.</item>
/// <item>A piece is the longest run of clusters (subclusters with extended L2 entries) that read alike: data, zeros,
/// the backing file, each contiguous in the host file where it has host space; a compressed cluster is a piece of its
/// own. An invalid entry fails the request that meets it first; a run stops before it.</item>
/// </list>
/// The image is read-only: entries never change, so no lock is needed beyond the cache's.
/// </remarks>
internal sealed class Qcow2Mapping
{
    private readonly FileAccessor _file;
    private readonly byte[] _l1;
    private readonly long _l1Entries;
    private readonly int _clusterBits;
    private readonly long _clusterSize;
    private readonly int _unitBits;
    private readonly long _l2Entries;
    private readonly int _entrySize;
    private readonly int _entriesPerSlice;
    private readonly bool _extendedL2;
    private readonly bool _externalData;
    private readonly bool _version2;
    private readonly long _size;
    private readonly Func<L2CacheEntry, bool, CancellationToken, ValueTask> _loadSlice;

    /// <summary>Creates the mapping of the image in <paramref name="file"/> (metadata lives there even with a data file).</summary>
    /// <param name="file">The image file, where the tables are.</param>
    /// <param name="header">The validated header.</param>
    /// <param name="l1">The part of the active L1 table inside the file (big-endian); the entries after it, up to <c>l1_size</c>, are 0.</param>
    /// <param name="externalData">Guest data lives in an external data file (offsets are guest offsets there).</param>
    /// <param name="options">The cache size and slice size.</param>
    public Qcow2Mapping(FileAccessor file, Qcow2Header header, byte[] l1, bool externalData, ImageOpenOptions options)
    {
        _file = file;
        _l1 = l1;
        _l1Entries = header.L1Size;
        _clusterBits = (int)header.ClusterBits;
        _clusterSize = header.ClusterSize;
        _extendedL2 = header.ExtendedL2;
        _unitBits = _extendedL2 ? _clusterBits - 5 : _clusterBits;
        _l2Entries = header.L2Entries;
        _entrySize = header.L2EntrySize;
        _externalData = externalData;
        _version2 = header.Version == 2;
        _size = (long)header.Size;
        SliceBytes = (int)Math.Min(options.L2SliceSize, _clusterSize);
        _entriesPerSlice = SliceBytes / _entrySize;
        Cache = new L2TableCache((int)Math.Clamp(options.L2CacheSize / SliceBytes, 1, int.MaxValue));
        _loadSlice = LoadSliceAsync;
    }

    /// <summary>The L2 slice cache.</summary>
    public L2TableCache Cache { get; }

    /// <summary>Bytes of one cached slice.</summary>
    public int SliceBytes { get; }

    /// <summary>Guest bytes one L2 table maps.</summary>
    public long L2Span => _l2Entries << _clusterBits;

    /// <summary>Maps the longest piece starting at <paramref name="offset"/> that reads alike, at most <paramref name="length"/> bytes (inside the disk).</summary>
    /// <exception cref="QedCorruptionException">The L1 or L2 entry there is invalid (QEMU's message).</exception>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<Qcow2Piece> MapAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        long cluster = offset >> _clusterBits;
        long l1Index = cluster / _l2Entries;
        ulong tableOffset = L1Entry(l1Index) & Qcow2L2Entry.OffsetMask;
        if (tableOffset == 0)
        {
            long end = (l1Index + 1) * L2Span;
            for (long next = l1Index + 1; end - offset < length && next < _l1Entries && (L1Entry(next) & Qcow2L2Entry.OffsetMask) == 0; next++)
            {
                end += L2Span;
            }
            return new Qcow2Piece(Math.Min(length, end - offset), Qcow2PieceKind.Unallocated, -1, 0);
        }
        if (tableOffset % (ulong)_clusterSize != 0)
        {
            throw new QedCorruptionException($"L2 table offset {Qcow2L2Entry.Hex(tableOffset)} unaligned (L1 index: {Qcow2L2Entry.Hex((ulong)l1Index)})");
        }

        long l2Index = cluster % _l2Entries;
        long sliceIndex = l2Index / _entriesPerSlice;
        var slice = await Cache.GetAsync(tableOffset + (ulong)(sliceIndex * SliceBytes), SliceBytes, _loadSlice, useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            long sliceEnd = Math.Min(_size, (cluster - l2Index % _entriesPerSlice + _entriesPerSlice) << _clusterBits);
            long limit = Math.Min(offset + length, sliceEnd);
            var first = Classify(slice, tableOffset, offset);
            if (first.Error is not null)
            {
                throw new QedCorruptionException(first.Error);
            }
            if (first.Kind == Qcow2PieceKind.Compressed)
            {
                long clusterEnd = (cluster + 1) << _clusterBits;
                return new Qcow2Piece(Math.Min(limit, clusterEnd) - offset, Qcow2PieceKind.Compressed, -1, first.Entry);
            }
            long unitSize = 1L << _unitBits;
            long position = ((offset >> _unitBits) + 1) << _unitBits;
            while (position < limit)
            {
                var next = Classify(slice, tableOffset, position);
                bool continues = next.Error is null && next.Kind == first.Kind
                    && (first.HostOffset < 0 ? next.HostOffset < 0 : next.HostOffset == first.HostOffset + (position - offset));
                if (!continues)
                {
                    break;
                }
                position += unitSize;
            }
            return new Qcow2Piece(Math.Min(position, limit) - offset, first.Kind, first.HostOffset, first.Entry);
        }
        finally
        {
            Cache.Release(slice);
        }
    }

    private ulong L1Entry(long index) =>
        index < _l1.Length / sizeof(ulong) ? BinaryPrimitives.ReadUInt64BigEndian(_l1.AsSpan((int)(index * sizeof(ulong)))) : 0;

    /// <summary>What the unit (cluster or subcluster) holding guest byte <paramref name="position"/> reads as, from there; an invalid one carries QEMU's message.</summary>
    private Unit Classify(L2CacheEntry slice, ulong tableOffset, long position)
    {
        long cluster = position >> _clusterBits;
        long l2Index = cluster % _l2Entries;
        int at = (int)(l2Index % _entriesPerSlice) * _entrySize;
        ulong entry = BinaryPrimitives.ReadUInt64BigEndian(slice.Table.AsSpan(at));
        var clusterType = Qcow2L2Entry.ClusterType(entry, _extendedL2, _externalData);
        Qcow2SubclusterType type;
        if (_extendedL2)
        {
            ulong bitmap = BinaryPrimitives.ReadUInt64BigEndian(slice.Table.AsSpan(at + sizeof(ulong)));
            type = Qcow2L2Entry.SubclusterType(clusterType, bitmap, (int)((position >> _unitBits) & (Qcow2L2Entry.Subclusters - 1)));
        }
        else
        {
            type = Qcow2L2Entry.Standard(clusterType);
        }

        if (_version2 && type is Qcow2SubclusterType.ZeroPlain or Qcow2SubclusterType.ZeroAllocated)
        {
            return Unit.Invalid($"Zero cluster entry found in pre-v3 image {Where(tableOffset, l2Index)}");
        }
        switch (type)
        {
            case Qcow2SubclusterType.Invalid:
                // Two spaces, as QEMU 7.2 prints it.
                return Unit.Invalid($"Invalid cluster entry found  {Where(tableOffset, l2Index)}");
            case Qcow2SubclusterType.Compressed:
                return _externalData
                    ? Unit.Invalid($"Compressed cluster entry found in image with external data file {Where(tableOffset, l2Index)}")
                    : new Unit(Qcow2PieceKind.Compressed, -1, entry, null);
            case Qcow2SubclusterType.ZeroPlain:
                return new Unit(Qcow2PieceKind.Zero, -1, entry, null);
            case Qcow2SubclusterType.UnallocatedPlain:
                return new Unit(Qcow2PieceKind.Unallocated, -1, entry, null);
        }

        ulong hostCluster = entry & Qcow2L2Entry.OffsetMask;
        if (hostCluster % (ulong)_clusterSize != 0)
        {
            return Unit.Invalid($"Cluster allocation offset {Qcow2L2Entry.Hex(hostCluster)} unaligned {Where(tableOffset, l2Index)}");
        }
        long guestCluster = cluster << _clusterBits;
        if (_externalData && hostCluster != (ulong)guestCluster)
        {
            return Unit.Invalid($"External data file host cluster offset {Qcow2L2Entry.Hex(hostCluster)} does not match guest cluster offset: {Qcow2L2Entry.Hex((ulong)guestCluster)}, L2 index: {Qcow2L2Entry.Hex((ulong)l2Index)})");
        }
        // Bits 9-55 of a host offset stay below 2^56: no overflow.
        long host = (long)hostCluster + (position - guestCluster);
        var kind = type switch
        {
            Qcow2SubclusterType.Normal => Qcow2PieceKind.Data,
            Qcow2SubclusterType.ZeroAllocated => Qcow2PieceKind.Zero,
            _ => Qcow2PieceKind.Unallocated,
        };
        return new Unit(kind, host, entry, null);
    }

    /// <summary>How QEMU names an entry in its corruption messages (built only on the error path).</summary>
    private static string Where(ulong tableOffset, long l2Index) =>
        $"(L2 offset: {Qcow2L2Entry.Hex(tableOffset)}, L2 index: {Qcow2L2Entry.Hex((ulong)l2Index)})";

    private async ValueTask LoadSliceAsync(L2CacheEntry entry, bool useAsync, CancellationToken cancellationToken) =>
        await _file.ReadZeroPaddedAsync(entry.Table, (long)entry.Offset, useAsync, cancellationToken).ConfigureAwait(false);

    private readonly record struct Unit(Qcow2PieceKind Kind, long HostOffset, ulong Entry, string? Error)
    {
        public static Unit Invalid(string error) => new(Qcow2PieceKind.Unallocated, -1, 0, error);
    }
}

/// <summary>A run of guest bytes that read alike.</summary>
/// <param name="Length">Bytes in the run (at least 1).</param>
/// <param name="Kind">What they read as.</param>
/// <param name="HostOffset">Where the run's first byte lies in the data file (the image file, or the external data file), when it has host space; else -1.</param>
/// <param name="Entry">For <see cref="Qcow2PieceKind.Compressed"/>, the L2 entry (its descriptor).</param>
internal readonly record struct Qcow2Piece(long Length, Qcow2PieceKind Kind, long HostOffset, ulong Entry);

/// <summary>What a <see cref="Qcow2Piece"/> reads as.</summary>
internal enum Qcow2PieceKind
{
    /// <summary>Host bytes at the offset.</summary>
    Data,

    /// <summary>Zeros (over host space when the offset is set).</summary>
    Zero,

    /// <summary>The backing file, or zeros without one (inside an allocated cluster when the offset is set).</summary>
    Unallocated,

    /// <summary>Part of one compressed cluster.</summary>
    Compressed,
}
