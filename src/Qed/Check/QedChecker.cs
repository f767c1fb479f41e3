using Qed.Format;
using Qed.IO;
using Qed.Tables;

namespace Qed.Check;

/// <summary>
/// Consistency check and repair of one QED image (QED-FORMAT.md §8).
/// </summary>
/// <remarks>
/// Algorithm:
/// <list type="number">
/// <item>Mark the L1 table's clusters as used.</item>
/// <item>For every L1 entry: an invalid table offset is a corruption (zeroed by <see cref="RepairMode.All"/>);
/// a table whose clusters are already marked is one corruption per clashing cluster and is not read;
/// otherwise the table is read and every data entry is counted, checked and marked. An invalid entry is a
/// corruption (zeroed by <see cref="RepairMode.All"/>, the table written back whole); a cluster marked twice is
/// a corruption that no repair can fix.</item>
/// <item>Leaks are the clusters between the header area and the end of the file that nothing marked. Counts are
/// exact cluster indices (QEMU's faulty division reports spurious leaks, §8.4).</item>
/// <item>Beyond QEMU, a repair truncates leaked clusters at the end of the file: nothing references them, so
/// no readable data can be lost. It does so only when no corruption remains, since an invalid or shared entry may
/// still point into them. Leaks in the middle of the file stay: QED has no free-space map to record them.</item>
/// </list>
/// The caller guarantees that no other request uses the image while the check runs.
/// </remarks>
internal sealed class QedChecker
{
    private readonly FileAccessor _file;
    private readonly QedHeader _header;
    private readonly QedGeometry _geometry;
    private readonly byte[] _l1;
    private readonly long _fileSize;
    private readonly ulong _headerBytes;

    public QedChecker(FileAccessor file, QedHeader header, QedGeometry geometry, byte[] l1, long fileSize)
    {
        _file = file;
        _header = header;
        _geometry = geometry;
        _l1 = l1;
        _fileSize = fileSize;
        _headerBytes = (ulong)header.HeaderSize * header.ClusterSize;
    }

    /// <summary>True when the repair changed any L2 table (cached copies are stale).</summary>
    public bool TablesChanged { get; private set; }

    /// <summary>The first read or write error counted in <see cref="CheckResult.CheckErrors"/>, or null.</summary>
    public IOException? FirstFailure { get; private set; }

    /// <summary>The file length after the repair truncated trailing leaks, or -1 when it did not.</summary>
    public long TruncatedTo { get; private set; } = -1;

    public async ValueTask<CheckResult> CheckAsync(RepairMode mode, bool useAsync, CancellationToken cancellationToken)
    {
        var used = new ClusterBitmap();
        long corruptions = 0, fixedCorruptions = 0, allocated = 0, fragmented = 0, errors = 0;
        string? firstError = null;
        int bits = _geometry.ClusterBits;
        bool repair = mode == RepairMode.All;
        bool l1Changed = false;

        long l1Cluster = (long)(_header.L1TableOffset >> bits);
        for (int c = 0; c < _geometry.TableSize; c++)
        {
            used.Set(l1Cluster + c);
        }

        byte[] table = new byte[_geometry.TableBytes];
        for (int i = 0; i < _geometry.TableEntries; i++)
        {
            ulong tableOffset = TableEntry.Read(_l1, i);
            if (tableOffset == 0)
            {
                continue;
            }
            if (!OffsetRules.IsValidTable(tableOffset, _geometry, _headerBytes, (ulong)_fileSize))
            {
                if (repair)
                {
                    TableEntry.Write(_l1, i, 0);
                    l1Changed = true;
                    fixedCorruptions++;
                }
                else
                {
                    corruptions++;
                }
                continue;
            }
            bool clash = false;
            for (int c = 0; c < _geometry.TableSize; c++)
            {
                if (!used.Set((long)(tableOffset >> bits) + c))
                {
                    corruptions++;
                    clash = true;
                }
            }
            if (clash)
            {
                continue;
            }
            try
            {
                await _file.ReadZeroPaddedAsync(table, (long)tableOffset, useAsync, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                errors++;
                firstError ??= e.Message;
                FirstFailure ??= e;
                continue;
            }

            bool tableChanged = false;
            ulong previous = 0;
            for (int j = 0; j < _geometry.TableEntries; j++)
            {
                ulong entry = TableEntry.Read(table, j);
                if (entry is TableEntry.Unallocated or TableEntry.Zero)
                {
                    continue;
                }
                allocated++;
                if (previous != 0 && entry != previous + (ulong)_geometry.ClusterSize)
                {
                    fragmented++;
                }
                previous = entry;
                if (!OffsetRules.IsValidCluster(entry, _geometry, _headerBytes, (ulong)_fileSize))
                {
                    if (repair)
                    {
                        TableEntry.Write(table, j, 0);
                        tableChanged = true;
                        fixedCorruptions++;
                    }
                    else
                    {
                        corruptions++;
                    }
                }
                else if (!used.Set((long)(entry >> bits)))
                {
                    corruptions++;
                }
            }
            if (tableChanged)
            {
                try
                {
                    await _file.WriteAsync(table, (long)tableOffset, useAsync, cancellationToken).ConfigureAwait(false);
                    TablesChanged = true;
                }
                catch (IOException e)
                {
                    errors++;
                    firstError ??= e.Message;
                    FirstFailure ??= e;
                }
            }
        }

        if (l1Changed)
        {
            try
            {
                await _file.WriteAsync(_l1, (long)_header.L1TableOffset, useAsync, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                errors++;
                firstError ??= e.Message;
                FirstFailure ??= e;
            }
        }

        long leaks = 0, fixedLeaks = 0;
        if (errors == 0)
        {
            long fileClusters = _fileSize >> bits;
            long headerClusters = Math.Min(_header.HeaderSize, fileClusters);
            leaks = fileClusters - headerClusters - used.CountInRange(headerClusters, fileClusters);
            // Reclaim only when no corruption remains: an invalid or shared entry may still point into those clusters.
            if (mode != RepairMode.None && leaks > 0 && corruptions == 0)
            {
                long keep = Math.Max(used.Highest() + 1, headerClusters);
                if (keep < fileClusters)
                {
                    await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
                    TruncatedTo = keep << bits;
                    _file.SetLength(TruncatedTo);
                    fixedLeaks = fileClusters - keep;
                    leaks -= fixedLeaks;
                }
            }
        }

        if (l1Changed || TablesChanged)
        {
            await _file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
        }

        return new CheckResult
        {
            TotalClusters = _geometry.ClustersFor((long)_header.ImageSize),
            AllocatedClusters = allocated,
            FragmentedClusters = fragmented,
            Corruptions = corruptions,
            CorruptionsFixed = fixedCorruptions,
            Leaks = leaks,
            LeaksFixed = fixedLeaks,
            CheckErrors = errors,
            FirstError = firstError,
        };
    }
}
