using System.Runtime.CompilerServices;
using Qed.Format;
using Qed.IO;
using Qed.Tables;

namespace Qed.Image;

/// <summary>
/// Guest offsets to file offsets: the L1 table in memory, L2 tables cached in slices, and the validation of every
/// offset read from them before it is trusted.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>The L1 entry of an offset names its L2 table (0: none). It is validated against the header area and the
/// allocation end before the table is read.</item>
/// <item>The cache holds slices of L2 tables (<see cref="ImageOpenOptions.L2SliceSize"/>), so a miss reads only the part
/// of a table it needs; a mapping never crosses the end of its slice.</item>
/// <item>Data entries are validated one by one, also inside a run (QEMU checks only the first, QED-FORMAT.md §4.1).</item>
/// </list>
/// Reads take no lock: entries are read atomically, and an entry only ever changes from "not allocated" to a cluster
/// whose data is already written.
/// </remarks>
internal sealed class SliceMap
{
    private readonly FileAccessor _file;
    private readonly QedGeometry _geometry;
    private readonly ulong _headerBytes;
    private readonly ClusterAllocator _space;
    private readonly Func<L2CacheEntry, bool, CancellationToken, ValueTask> _loadSlice;

    public SliceMap(FileAccessor file, QedGeometry geometry, ulong headerBytes, byte[] l1, ClusterAllocator space, ImageOpenOptions options)
    {
        _file = file;
        _geometry = geometry;
        _headerBytes = headerBytes;
        _space = space;
        L1 = l1;
        SliceBytes = Math.Min(options.L2SliceSize, geometry.TableBytes);
        SliceShift = System.Numerics.BitOperations.Log2((uint)(SliceBytes / sizeof(ulong)));
        Cache = new L2TableCache((int)Math.Clamp(options.L2CacheSize / SliceBytes, 1, int.MaxValue));
        _loadSlice = LoadSliceAsync;
    }

    /// <summary>The L1 table as on disk; entries change only under the L1 gate of <see cref="TableUpdater"/>.</summary>
    public byte[] L1 { get; }

    public L2TableCache Cache { get; }

    /// <summary>Bytes of one cached slice of an L2 table.</summary>
    public int SliceBytes { get; }

    /// <summary>log2 of the entries in one slice.</summary>
    public int SliceShift { get; }

    /// <summary>Maps the longest run starting at <paramref name="offset"/> that has one state (and, for data, is contiguous in the file), at most <paramref name="length"/> bytes and never past the span of its L2 slice (where no table exists, up to the next table that does).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<Mapping> MapAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken)
    {
        int inCluster = _geometry.OffsetInCluster(offset);
        long pieceLength = Math.Min(length, RoomInSlice(offset));
        int l1Index = _geometry.L1Index(offset);
        ulong tableOffset = TableEntry.Read(L1, l1Index);
        if (tableOffset == 0)
        {
            return new Mapping(BlockState.Unallocated, AbsentTablesSpan(offset, length), -1);
        }
        ValidateTableOffset(tableOffset, l1Index);

        var table = await GetSliceAsync(tableOffset, _geometry.L2Index(offset) >> SliceShift, useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            int first = _geometry.L2Index(offset) & ((1 << SliceShift) - 1);
            int wanted = (int)_geometry.ClustersFor(inCluster + pieceLength);
            ulong entry = table[first];
            int run = 1;
            if (entry is TableEntry.Unallocated or TableEntry.Zero)
            {
                while (run < wanted && table[first + run] == entry)
                {
                    run++;
                }
                var state = entry == TableEntry.Zero ? BlockState.Zero : BlockState.Unallocated;
                return new Mapping(state, Math.Min(pieceLength, ((long)run << _geometry.ClusterBits) - inCluster), -1);
            }

            ValidateDataOffset(entry, tableOffset, _geometry.L2Index(offset));
            while (run < wanted)
            {
                ulong next = table[first + run];
                // Unlike QEMU, every cluster of a run is validated, not just the first (QED-FORMAT.md §4.1).
                if (next != entry + ((ulong)run << _geometry.ClusterBits) || !IsValidDataOffset(next))
                {
                    break;
                }
                run++;
            }
            return new Mapping(BlockState.Data, Math.Min(pieceLength, ((long)run << _geometry.ClusterBits) - inCluster), (long)entry + inCluster);
        }
        finally
        {
            Cache.Release(table);
        }
    }

    /// <summary>
    /// Guest bytes from <paramref name="offset"/>, whose L2 table does not exist, to the next table that does (at most
    /// <paramref name="length"/>): a sparse disk maps in a step per run of absent tables, not one per slice.
    /// </summary>
    private long AbsentTablesSpan(long offset, long length)
    {
        long span = RoomInTable(offset);
        int entries = L1.Length / sizeof(ulong);
        for (int next = _geometry.L1Index(offset) + 1; span < length && next < entries && TableEntry.Read(L1, next) == 0; next++)
        {
            span += Math.Min(_geometry.L2Span, length - span);
        }
        return Math.Min(span, length);
    }

    /// <summary>Guest bytes from <paramref name="offset"/> to the end of the span mapped by its L2 slice.</summary>
    public long RoomInSlice(long offset)
    {
        long span = 1L << (SliceShift + _geometry.ClusterBits);
        return span - (offset & (span - 1));
    }

    /// <summary>Guest bytes from <paramref name="offset"/> to the end of the span its L2 table maps.</summary>
    public long RoomInTable(long offset) => _geometry.L2Span - (offset & (_geometry.L2Span - 1));

    /// <summary>The L1 entry for <paramref name="offset"/>: 0 when no L2 table exists, else a validated table offset.</summary>
    public ulong ValidatedTableOffset(long offset)
    {
        int l1Index = _geometry.L1Index(offset);
        ulong tableOffset = TableEntry.Read(L1, l1Index);
        if (tableOffset != 0)
        {
            ValidateTableOffset(tableOffset, l1Index);
        }
        return tableOffset;
    }

    /// <summary>
    /// Counts the entries from the one mapping <paramref name="offset"/> that an allocation may take (unallocated or
    /// zero; only unallocated when <paramref name="unallocatedOnly"/>), at most <paramref name="wanted"/>, adding every
    /// slice it reads, in order and with a reference held, to <paramref name="slices"/> (release them with <see cref="ReleaseAll"/>).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<(int Count, ulong FirstState, ulong LastState)> CollectRunAsync(ulong tableOffset, long offset, int wanted, bool unallocatedOnly, List<L2CacheEntry> slices, bool useAsync, CancellationToken cancellationToken)
    {
        int first = _geometry.L2Index(offset);
        int mask = (1 << SliceShift) - 1;
        ulong firstState = TableEntry.Unallocated, lastState = TableEntry.Unallocated;
        int count = 0;
        while (count < wanted)
        {
            int index = first + count;
            int slice = (index >> SliceShift) - (first >> SliceShift);
            if (slice == slices.Count)
            {
                slices.Add(await GetSliceAsync(tableOffset, index >> SliceShift, useAsync, cancellationToken).ConfigureAwait(false));
            }
            ulong entry = slices[slice][index & mask];
            if (entry != TableEntry.Unallocated && (unallocatedOnly || entry != TableEntry.Zero))
            {
                break;
            }
            firstState = count == 0 ? entry : firstState;
            lastState = entry;
            count++;
        }
        return (count, firstState, lastState);
    }

    /// <summary>
    /// Adds to <paramref name="slices"/>, in order and with a reference held, every slice of the table at
    /// <paramref name="tableOffset"/> that holds entries <paramref name="first"/> to <paramref name="first"/> +
    /// <paramref name="count"/> − 1 (release them with <see cref="ReleaseAll"/>).
    /// </summary>
    public async ValueTask CollectSlicesAsync(ulong tableOffset, int first, int count, List<L2CacheEntry> slices, bool useAsync, CancellationToken cancellationToken)
    {
        for (int slice = first >> SliceShift; slice <= (first + count - 1) >> SliceShift; slice++)
        {
            slices.Add(await GetSliceAsync(tableOffset, slice, useAsync, cancellationToken).ConfigureAwait(false));
        }
    }

    /// <summary>Drops the references <see cref="CollectRunAsync"/> took and empties the list for its next use.</summary>
    public void ReleaseAll(List<L2CacheEntry> slices)
    {
        foreach (var slice in slices)
        {
            Cache.Release(slice);
        }
        slices.Clear();
    }

    private ValueTask<L2CacheEntry> GetSliceAsync(ulong tableOffset, int sliceNumber, bool useAsync, CancellationToken cancellationToken) =>
        Cache.GetAsync(tableOffset + (ulong)sliceNumber * (ulong)SliceBytes, SliceBytes, _loadSlice, useAsync, cancellationToken);

    private async ValueTask LoadSliceAsync(L2CacheEntry entry, bool useAsync, CancellationToken cancellationToken) =>
        await _file.ReadZeroPaddedAsync(entry.Table, (long)entry.Offset, useAsync, cancellationToken).ConfigureAwait(false);

    private bool IsValidDataOffset(ulong offset) =>
        OffsetRules.IsValidCluster(offset, _geometry, _headerBytes, (ulong)_space.End);

    private void ValidateDataOffset(ulong entry, ulong tableOffset, int index)
    {
        if (!IsValidDataOffset(entry))
        {
            throw new QedCorruptionException($"Invalid argument: L2 table at 0x{tableOffset:x} entry {index} points to 0x{entry:x}, which is not a valid cluster offset in '{_file.Path}'");
        }
    }

    private void ValidateTableOffset(ulong tableOffset, int l1Index)
    {
        if (!OffsetRules.IsValidTable(tableOffset, _geometry, _headerBytes, (ulong)_space.End))
        {
            throw new QedCorruptionException($"Invalid argument: L1 entry {l1Index} points to 0x{tableOffset:x}, which is not a valid L2 table offset in '{_file.Path}'");
        }
    }
}

/// <summary>One mapped run: its state, its length and, for data, where it starts in the file (else -1).</summary>
internal readonly record struct Mapping(BlockState State, long Length, long HostOffset);
