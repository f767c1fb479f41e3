using System.Numerics;

namespace Qed.Format;

/// <summary>Cluster and table geometry of one image, with the address arithmetic of QED-FORMAT.md §1.5.</summary>
/// <remarks>Every count here is exact: <see cref="ClustersFor"/> is <c>ceil(bytes / cs)</c>, not QEMU's faulty division by <c>cs − 1</c> (§5.3).</remarks>
internal readonly record struct QedGeometry
{
    /// <summary>Smallest cluster size the format allows.</summary>
    public const int MinClusterSize = 4096;
    /// <summary>Largest cluster size the format allows (64 MiB).</summary>
    public const int MaxClusterSize = 64 * 1024 * 1024;
    /// <summary>Smallest table size, in clusters.</summary>
    public const int MinTableSize = 1;
    /// <summary>Largest table size, in clusters.</summary>
    public const int MaxTableSize = 16;
    /// <summary>QEMU's default cluster size.</summary>
    public const int DefaultClusterSize = 65536;
    /// <summary>QEMU's default table size.</summary>
    public const int DefaultTableSize = 4;

    /// <summary>Creates a geometry after checking both sizes.</summary>
    public QedGeometry(int clusterSize, int tableSize)
    {
        if (!IsValidClusterSize(clusterSize))
        {
            throw new ArgumentOutOfRangeException(nameof(clusterSize), clusterSize, "The cluster size must be a power of two in [4096, 67108864].");
        }
        if (!IsValidTableSize(tableSize))
        {
            throw new ArgumentOutOfRangeException(nameof(tableSize), tableSize, "The table size must be a power of two in [1, 16].");
        }
        ClusterSize = clusterSize;
        TableSize = tableSize;
        ClusterBits = BitOperations.Log2((uint)clusterSize);
        TableEntries = tableSize * clusterSize / sizeof(ulong);
        IndexBits = BitOperations.Log2((uint)TableEntries);
    }

    /// <summary>Cluster size in bytes.</summary>
    public int ClusterSize { get; }
    /// <summary>Table size in clusters.</summary>
    public int TableSize { get; }
    /// <summary>log2 of the cluster size.</summary>
    public int ClusterBits { get; }
    /// <summary>Entries per table, <c>ts * cs / 8</c>.</summary>
    public int TableEntries { get; }
    /// <summary>log2 of <see cref="TableEntries"/>.</summary>
    public int IndexBits { get; }
    /// <summary>Bytes of one table on disk.</summary>
    public int TableBytes => TableSize * ClusterSize;
    /// <summary>Guest bytes one L2 table maps.</summary>
    public long L2Span => (long)TableEntries << ClusterBits;
    /// <summary>Mask of the offset inside a cluster.</summary>
    public long ClusterMask => ClusterSize - 1;

    /// <summary>Index of the L1 entry that maps a guest offset.</summary>
    public int L1Index(long guestOffset) => (int)((ulong)guestOffset >> (ClusterBits + IndexBits));
    /// <summary>Index, inside its L2 table, of the entry that maps a guest offset.</summary>
    public int L2Index(long guestOffset) => (int)((guestOffset >> ClusterBits) & (TableEntries - 1));
    /// <summary>Offset of a guest byte inside its cluster.</summary>
    public int OffsetInCluster(long offset) => (int)(offset & ClusterMask);
    /// <summary>Rounds down to a cluster boundary.</summary>
    public long AlignDown(long offset) => offset & ~ClusterMask;
    /// <summary>Rounds up to a cluster boundary (no overflow below <c>long.MaxValue - cs</c>).</summary>
    public long AlignUp(long offset) => (offset + ClusterMask) & ~ClusterMask;
    /// <summary>Exact number of clusters needed to hold <paramref name="bytes"/> bytes: <c>ceil(bytes / cs)</c>.</summary>
    public long ClustersFor(long bytes) => (bytes >> ClusterBits) + ((bytes & ClusterMask) != 0 ? 1 : 0);

    /// <summary>The largest virtual size the format allows for this geometry, <c>N² · cs</c>, computed without overflow and capped at <c>long.MaxValue</c> rounded down to 512.</summary>
    public long MaxImageSize
    {
        get
        {
            int exponent = 2 * IndexBits + ClusterBits;
            return exponent >= 63 ? long.MaxValue & ~511L : 1L << exponent;
        }
    }

    /// <summary>The maximum as QEMU computes it in wrapping 64-bit arithmetic (QED-FORMAT.md §2.2): 0 when the true value reaches 2^64.</summary>
    public ulong QemuMaxImageSize
    {
        get
        {
            int exponent = 2 * IndexBits + ClusterBits;
            return exponent >= 64 ? 0 : 1UL << exponent;
        }
    }

    /// <summary>True for a power of two in [4096, 64 MiB].</summary>
    public static bool IsValidClusterSize(long clusterSize) =>
        clusterSize >= MinClusterSize && clusterSize <= MaxClusterSize && BitOperations.IsPow2(clusterSize);

    /// <summary>True for a power of two in [1, 16].</summary>
    public static bool IsValidTableSize(long tableSize) =>
        tableSize >= MinTableSize && tableSize <= MaxTableSize && BitOperations.IsPow2(tableSize);

    /// <summary>The default geometry (64 KiB clusters, tables of 4 clusters).</summary>
    public static QedGeometry Default => new(DefaultClusterSize, DefaultTableSize);
}
