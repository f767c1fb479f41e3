namespace Qed.Formats.Qcow2.Check;

/// <summary>
/// The reference counts a check computes, one per host cluster, kept in pages allocated on first use so that memory
/// follows the clusters referenced rather than a (possibly huge, sparse, hostile) file length.
/// </summary>
/// <remarks>
/// <see cref="Length"/> mirrors QEMU's in-memory table: it starts at the clusters of the file and grows to include any
/// cluster that is counted (a reference less than one cluster past the end of the file is legal), so that the comparison
/// with the on-disk refcounts covers exactly QEMU's range. Counts saturate at the image's largest refcount, as QEMU's
/// table has the image's width (1-bit refcounts overflow at the second reference).
/// </remarks>
internal sealed class Qcow2ReferenceCounts
{
    private const int PageShift = 12;
    private const int PageSize = 1 << PageShift;
    private readonly Dictionary<long, uint[]> _pages = [];
    private readonly uint _max;
    private long _lastKey = -1;
    private uint[]? _lastPage;

    /// <param name="clusters">Clusters of the file (QEMU's starting table length).</param>
    /// <param name="refcountBits">Width of the image's refcounts: the count that overflows is <c>2^bits - 1</c>.</param>
    public Qcow2ReferenceCounts(long clusters, int refcountBits)
    {
        Length = clusters;
        // Wider refcounts than 32 bits cannot be reached by any image this check can walk (more references than L2 entries).
        _max = refcountBits >= 32 ? uint.MaxValue : (uint)((1UL << refcountBits) - 1);
    }

    /// <summary>Clusters covered: the file's, grown to the highest cluster counted.</summary>
    public long Length { get; private set; }

    /// <summary>The count of <paramref name="cluster"/> (0 when never counted).</summary>
    public uint Get(long cluster) =>
        _pages.TryGetValue(cluster >> PageShift, out var page) ? page[cluster & (PageSize - 1)] : 0;

    /// <summary>The counts of the aligned run of <see cref="PageClusters"/> clusters holding <paramref name="cluster"/>, or null when none of them was counted.</summary>
    public uint[]? Page(long cluster) => _pages.GetValueOrDefault(cluster >> PageShift);

    /// <summary>True when no cluster of the aligned run of <see cref="PageClusters"/> holding <paramref name="cluster"/> has been counted (a quick skip for the comparison).</summary>
    public bool IsPageEmpty(long cluster) => !_pages.ContainsKey(cluster >> PageShift);

    /// <summary>Adds one reference to <paramref name="cluster"/>; returns false, changing nothing, when the count is already at the largest refcount.</summary>
    public bool Increment(long cluster)
    {
        if (cluster >= Length)
        {
            Length = cluster + 1;
        }
        long key = cluster >> PageShift;
        // Clusters are mostly counted in runs: keep the last page at hand.
        uint[]? page = key == _lastKey ? _lastPage : null;
        if (page is null)
        {
            if (!_pages.TryGetValue(key, out page))
            {
                page = new uint[PageSize];
                _pages.Add(key, page);
            }
            _lastKey = key;
            _lastPage = page;
        }
        ref uint count = ref page[cluster & (PageSize - 1)];
        if (count == _max)
        {
            return false;
        }
        count++;
        return true;
    }

    /// <summary>Clusters per page: <see cref="IsPageEmpty"/> answers for the aligned run of this many clusters.</summary>
    public static int PageClusters => PageSize;
}
