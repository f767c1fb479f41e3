using Qed.Check;
using Qed.IO;
using Qed.Tables;

namespace Qed.Image;

// Shrinking, which QEMU refuses for QED ("Shrinking images is currently not supported").
public sealed partial class QedImage
{
    /// <summary>
    /// Shrinks the image to <paramref name="newSize"/> (a multiple of 512, below the current size); the caller holds the
    /// resize gate.
    /// </summary>
    /// <remarks>
    /// Write ordering:
    /// <list type="number">
    /// <item>Take every allocation stripe: no allocation runs while entries are cleared (reads and in-place writes below
    /// the new end go on).</item>
    /// <item>Write the header with the new size and flush it. From here nothing past the new end is visible, so what
    /// follows never changes what a request can read; a crash after this step leaves entries past the end, which are
    /// consistent (<c>qemu-img check</c> accepts them) and which a later grow zeroes before exposing them.</item>
    /// <item>A partial last cluster is kept (its part below the new end must read the same); if it holds data, its bytes
    /// past the new end are zeroed in the file so that no later grow can show them again.</item>
    /// <item>Clear the L2 entries past the new end in the last, partial table, then the L1 entries of the tables wholly
    /// past it. The clusters they referenced are now leaks, never entries pointing at nothing. The dropped tables leave the
    /// L2 cache, since their space may be reused by a new table at the same offset.</item>
    /// <item>Flush: the cleared entries are stable before any cluster they referenced is cut off the file, else a crash
    /// could leave an entry pointing past the end of the file.</item>
    /// <item>Give the stripes back and reclaim what can be reclaimed: the leak repair (<see cref="RepairMode.Leaks"/>)
    /// truncates the unreferenced clusters at the end of the file, data and L2 tables alike. Clusters in the middle of
    /// the file stay leaked: QED has no free-space map that could record them (<c>qemu-img check</c> counts them as
    /// leaks, which harm no data).</item>
    /// </list>
    /// Requests that start after step 2 cannot reach past the new end; one still running past it when the shrink starts
    /// races with the clearing (its caller asked for both at once).
    /// </remarks>
    private async ValueTask ShrinkAsync(long newSize, bool useAsync, CancellationToken cancellationToken)
    {
        await _space.EnterAllAsync(useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            await _headerState.UpdateAsync(h => h with { ImageSize = (ulong)newSize }, useAsync, cancellationToken).ConfigureAwait(false);

            int inCluster = _geometry.OffsetInCluster(newSize);
            if (inCluster != 0)
            {
                var piece = await _map.MapAsync(newSize, _geometry.ClusterSize - inCluster, useAsync, cancellationToken).ConfigureAwait(false);
                if (piece.State == BlockState.Data)
                {
                    await _file.ZeroRangeAsync(piece.HostOffset, piece.Length, deallocate: false, useAsync, cancellationToken).ConfigureAwait(false);
                }
            }

            long cut = _geometry.AlignUp(newSize);
            await ClearTableTailAsync(cut, useAsync, cancellationToken).ConfigureAwait(false);
            await ClearTablesPastAsync(cut, useAsync, cancellationToken).ConfigureAwait(false);
            await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _space.ExitAll();
        }
        await RunCheckAsync(RepairMode.Leaks, useAsync, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Step 4, L2: clears the entries from <paramref name="cut"/> (cluster aligned) to the end of its table, when the table exists and <paramref name="cut"/> is not on a table boundary.</summary>
    private async ValueTask ClearTableTailAsync(long cut, bool useAsync, CancellationToken cancellationToken)
    {
        int first = _geometry.L2Index(cut);
        if (first == 0 || cut >= _geometry.MaxImageSize)
        {
            return;
        }
        ulong tableOffset = _map.ValidatedTableOffset(cut);
        if (tableOffset == 0)
        {
            return;
        }
        // The caller holds every stripe, so this stripe's scratch list is free.
        var slices = _space.StripeFor(cut).Slices;
        try
        {
            int count = _geometry.TableEntries - first;
            await _map.CollectSlicesAsync(tableOffset, first, count, slices, useAsync, cancellationToken).ConfigureAwait(false);
            int mask = (1 << _map.SliceShift) - 1;
            int firstSlice = first >> _map.SliceShift;
            // Write only up to the last entry in use: a sparse table's tail costs no write.
            int last = -1;
            for (int index = first; index < first + count; index++)
            {
                if (slices[(index >> _map.SliceShift) - firstSlice][index & mask] != TableEntry.Unallocated)
                {
                    last = index;
                }
            }
            if (last >= 0)
            {
                await _tables.SetEntriesAsync(tableOffset, slices, cut, last - first + 1, TableEntry.Unallocated, 0, useAsync, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _map.ReleaseAll(slices);
        }
    }

    /// <summary>Step 4, L1: clears the entries of the tables that start at or after <paramref name="cut"/>.</summary>
    private async ValueTask ClearTablesPastAsync(long cut, bool useAsync, CancellationToken cancellationToken)
    {
        int entries = _map.L1.Length / sizeof(ulong);
        long firstTable = cut / _geometry.L2Span + (cut % _geometry.L2Span != 0 ? 1 : 0);
        int first = -1, last = -1;
        for (long index = firstTable; index < entries; index++)
        {
            if (TableEntry.Read(_map.L1, (int)index) != 0)
            {
                first = first < 0 ? (int)index : first;
                last = (int)index;
            }
        }
        if (first < 0)
        {
            return;
        }
        var dropped = new List<ulong>();
        for (int index = first; index <= last; index++)
        {
            ulong table = TableEntry.Read(_map.L1, index);
            if (table != 0)
            {
                dropped.Add(table);
            }
        }
        await _tables.ClearL1EntriesAsync(first, last - first + 1, useAsync, cancellationToken).ConfigureAwait(false);
        // The leak repair may cut these tables off the file and a later allocation put a new table at the same offset:
        // their cached slices must not stand in for it (the cache keeps what it holds under an offset).
        foreach (ulong table in dropped)
        {
            _map.Cache.Forget(table, table + (ulong)_geometry.TableBytes);
        }
    }
}
