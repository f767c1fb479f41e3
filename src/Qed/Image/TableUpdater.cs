using System.Buffers;
using System.Runtime.CompilerServices;
using Qed.Format;
using Qed.IO;
using Qed.Tables;

namespace Qed.Image;

/// <summary>
/// Changes L1 and L2 entries on disk and then in memory, in the order a crash tolerates.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>Every change writes the 512-byte blocks that hold the changed entries, in one write, from a patched copy
/// (<see cref="PatchBlocksAsync"/>, the one routine for L2 slices and the L1); memory changes only once the disk did,
/// so a failed write leaves the cache as the file is.</item>
/// <item>A new L2 table is reserved after the data, written whole and flushed before the L1 block that points at it
/// is written; only then are its changed slices published in the cache.</item>
/// <item>L1 block updates are serialized by their own gate, since two tables' entries can share a 512-byte block.</item>
/// </list>
/// The caller holds the allocation stripe of the L2 table it changes.
/// </remarks>
internal sealed class TableUpdater : IDisposable
{
    private readonly FileAccessor _file;
    private readonly QedGeometry _geometry;
    private readonly SliceMap _map;
    private readonly ClusterAllocator _space;
    private readonly long _l1Offset;
    /// <summary>Serializes read-patch-write of L1 blocks (two tables' entries may share a 512-byte block).</summary>
    private readonly AsyncGate _l1Gate = new();

    public TableUpdater(FileAccessor file, QedGeometry geometry, SliceMap map, ClusterAllocator space, long l1Offset)
    {
        _file = file;
        _geometry = geometry;
        _map = map;
        _space = space;
        _l1Offset = l1Offset;
    }

    /// <summary>
    /// Sets the <paramref name="count"/> entries from the one mapping <paramref name="offset"/> to <c>value + i * step</c>:
    /// in the existing table at <paramref name="tableOffset"/>, whose slices covering the run are <paramref name="slices"/>,
    /// or, when <paramref name="tableOffset"/> is 0, in a new table.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SetEntriesAsync(ulong tableOffset, List<L2CacheEntry> slices, long offset, int count, ulong value, ulong step, bool useAsync, CancellationToken cancellationToken)
    {
        int first = _geometry.L2Index(offset);
        int firstSlice = first >> _map.SliceShift;
        if (tableOffset != 0)
        {
            // A block never spans two slices: slices are at least 512 bytes and aligned.
            var table = TableBlocks.InSlices(slices, _map.SliceShift, firstSlice);
            await PatchBlocksAsync(table, (long)tableOffset, first, count, value, step, useAsync, cancellationToken).ConfigureAwait(false);
            return;
        }

        long newTable = _space.Reserve(_geometry.TableBytes);
        byte[] created = new byte[_geometry.TableBytes];
        for (int i = 0; i < count; i++)
        {
            TableEntry.Write(created, first + i, value + (ulong)i * step);
        }
        await _file.WriteAsync(created, newTable, useAsync, cancellationToken).ConfigureAwait(false);
        // The table must be stable before the L1 entry can point at it.
        await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
        await _l1Gate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            await PatchBlocksAsync(TableBlocks.Whole(_map.L1), _l1Offset, _geometry.L1Index(offset), 1, (ulong)newTable, 0, useAsync, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _l1Gate.Exit();
        }

        // Publish the slices this request changed only once L1 reaches the table (§6.4): had the L1 write failed, a
        // published slice would outlive its leaked table and could shadow a later table at the same offset once a leak
        // repair moved the allocation pointer back. The other slices load from disk on demand.
        int sliceBytes = _map.SliceBytes;
        for (int slice = firstSlice; slice <= (first + count - 1) >> _map.SliceShift; slice++)
        {
            var entry = new L2CacheEntry((ulong)newTable + (ulong)slice * (ulong)sliceBytes, created.AsSpan(slice * sliceBytes, sliceBytes).ToArray()) { References = 1 };
            entry.MarkReady();
            _map.Cache.Release(_map.Cache.Insert(entry));
        }
    }

    /// <summary>Sets L1 entries <paramref name="first"/> to <paramref name="first"/> + <paramref name="count"/> − 1 to 0 (no L2 table), on disk and then in memory; the caller holds every allocation stripe.</summary>
    public async ValueTask ClearL1EntriesAsync(int first, int count, bool useAsync, CancellationToken cancellationToken)
    {
        await _l1Gate.EnterAsync(useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            await PatchBlocksAsync(TableBlocks.Whole(_map.L1), _l1Offset, first, count, 0, 0, useAsync, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _l1Gate.Exit();
        }
    }

    /// <summary>
    /// Writes the 512-byte blocks of <paramref name="table"/> (on disk at <paramref name="tableOffset"/>) that hold entries
    /// <paramref name="first"/> to <paramref name="first"/> + <paramref name="count"/> − 1, set to <c>value + i * step</c>,
    /// from a patched copy; then applies the change in memory.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask PatchBlocksAsync(TableBlocks table, long tableOffset, int first, int count, ulong value, ulong step, bool useAsync, CancellationToken cancellationToken)
    {
        const int per = TableEntry.EntriesPerBlock;
        int blockStart = first / per * per;
        int blockEnd = (first + count + per - 1) / per * per;
        int bytes = (blockEnd - blockStart) * sizeof(ulong);
        byte[] copy = ArrayPool<byte>.Shared.Rent(bytes);
        try
        {
            for (int block = blockStart; block < blockEnd; block += per)
            {
                Buffer.BlockCopy(table.Holder(block), table.IndexIn(block) * sizeof(ulong), copy, (block - blockStart) * sizeof(ulong), per * sizeof(ulong));
            }
            for (int i = 0; i < count; i++)
            {
                TableEntry.Write(copy, first - blockStart + i, value + (ulong)i * step);
            }
            await _file.WriteAsync(copy.AsMemory(0, bytes), tableOffset + blockStart * sizeof(ulong), useAsync, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(copy);
        }
        for (int i = 0; i < count; i++)
        {
            int index = first + i;
            TableEntry.Write(table.Holder(index), table.IndexIn(index), value + (ulong)i * step);
        }
    }

    /// <inheritdoc />
    public void Dispose() => _l1Gate.Dispose();

    /// <summary>The in-memory bytes of one table: a whole array (the L1) or consecutive cached slices of an L2 table.</summary>
    private readonly struct TableBlocks
    {
        private readonly byte[]? _whole;
        private readonly List<L2CacheEntry>? _slices;
        private readonly int _shift;
        private readonly int _firstSlice;

        private TableBlocks(byte[]? whole, List<L2CacheEntry>? slices, int shift, int firstSlice)
        {
            _whole = whole;
            _slices = slices;
            _shift = shift;
            _firstSlice = firstSlice;
        }

        public static TableBlocks Whole(byte[] table) => new(table, null, 0, 0);

        public static TableBlocks InSlices(List<L2CacheEntry> slices, int shift, int firstSlice) => new(null, slices, shift, firstSlice);

        /// <summary>The array holding entry <paramref name="index"/> of the table.</summary>
        public byte[] Holder(int index) => _whole ?? _slices![(index >> _shift) - _firstSlice].Table;

        /// <summary>The position of entry <paramref name="index"/> inside <see cref="Holder"/>.</summary>
        public int IndexIn(int index) => _whole is null ? index & ((1 << _shift) - 1) : index;
    }
}
