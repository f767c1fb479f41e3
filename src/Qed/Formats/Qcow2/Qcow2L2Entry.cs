using System.Globalization;

namespace Qed.Formats.Qcow2;

/// <summary>
/// The bits of qcow2 L1 and L2 entries (QCOW2.md §5.2-§5.4) and the classification of one cluster or subcluster, as
/// QEMU 7.2 classifies it for reading (first match wins).
/// </summary>
internal static class Qcow2L2Entry
{
    /// <summary>Bits 9-55: the host offset of an L2 table (L1 entries) or of a data cluster (L2 entries).</summary>
    public const ulong OffsetMask = 0x00FF_FFFF_FFFF_FE00;

    /// <summary>Bit 0 of a standard L2 entry (v3): the cluster reads as zeros.</summary>
    public const ulong ZeroFlag = 1;

    /// <summary>Bit 62: the entry is a compressed-cluster descriptor.</summary>
    public const ulong CompressedFlag = 1UL << 62;

    /// <summary>Bit 63: the refcount is exactly 1 (with an external data file, marks a cluster at offset 0).</summary>
    public const ulong CopiedFlag = 1UL << 63;

    /// <summary>Subclusters per cluster with extended L2 entries.</summary>
    public const int Subclusters = 32;

    /// <summary>The allocation bits (0-31) of an extended L2 bitmap.</summary>
    public const ulong AllAllocated = 0xFFFF_FFFF;

    /// <summary>The type of the cluster an L2 entry describes.</summary>
    /// <param name="entry">The entry (the first 8 bytes of an extended one).</param>
    /// <param name="extendedL2">Entries carry subcluster bitmaps (bit 0 is then not the zero flag).</param>
    /// <param name="externalData">The image has an external data file, where offset 0 with COPIED is a real cluster.</param>
    public static Qcow2ClusterType ClusterType(ulong entry, bool extendedL2, bool externalData)
    {
        if ((entry & CompressedFlag) != 0)
        {
            return Qcow2ClusterType.Compressed;
        }
        if ((entry & ZeroFlag) != 0 && !extendedL2)
        {
            return (entry & OffsetMask) != 0 ? Qcow2ClusterType.ZeroAllocated : Qcow2ClusterType.ZeroPlain;
        }
        if ((entry & OffsetMask) == 0)
        {
            // In a data file every cluster has refcount 1, so COPIED tells a cluster at offset 0 from no cluster.
            return externalData && (entry & CopiedFlag) != 0 ? Qcow2ClusterType.Normal : Qcow2ClusterType.Unallocated;
        }
        return Qcow2ClusterType.Normal;
    }

    /// <summary>
    /// The type of subcluster <paramref name="index"/> of a cluster of type <paramref name="cluster"/> with extended L2
    /// bitmap <paramref name="bitmap"/> (QCOW2.md §5.4). A bitmap that marks any subcluster both allocated and zero makes
    /// every subcluster of an allocated cluster invalid, as does any allocation bit in an unallocated cluster.
    /// </summary>
    public static Qcow2SubclusterType SubclusterType(Qcow2ClusterType cluster, ulong bitmap, int index)
    {
        ulong allocated = bitmap & AllAllocated;
        ulong zero = bitmap >> Subclusters;
        switch (cluster)
        {
            case Qcow2ClusterType.Compressed:
                return Qcow2SubclusterType.Compressed;
            case Qcow2ClusterType.Normal:
                if ((allocated & zero) != 0)
                {
                    return Qcow2SubclusterType.Invalid;
                }
                if ((zero >> index & 1) != 0)
                {
                    return Qcow2SubclusterType.ZeroAllocated;
                }
                return (allocated >> index & 1) != 0 ? Qcow2SubclusterType.Normal : Qcow2SubclusterType.UnallocatedAllocated;
            default:
                if (allocated != 0)
                {
                    return Qcow2SubclusterType.Invalid;
                }
                return (zero >> index & 1) != 0 ? Qcow2SubclusterType.ZeroPlain : Qcow2SubclusterType.UnallocatedPlain;
        }
    }

    /// <summary>The type of a whole cluster of a standard (not extended) L2 table, in subcluster terms.</summary>
    public static Qcow2SubclusterType Standard(Qcow2ClusterType cluster) => cluster switch
    {
        Qcow2ClusterType.Compressed => Qcow2SubclusterType.Compressed,
        Qcow2ClusterType.ZeroAllocated => Qcow2SubclusterType.ZeroAllocated,
        Qcow2ClusterType.ZeroPlain => Qcow2SubclusterType.ZeroPlain,
        Qcow2ClusterType.Normal => Qcow2SubclusterType.Normal,
        _ => Qcow2SubclusterType.UnallocatedPlain,
    };

    /// <summary>A number as QEMU's <c>%#x</c> prints it: <c>0x</c> and lower-case hex, except 0, which is plain <c>0</c>.</summary>
    public static string Hex(ulong value) => value == 0 ? "0" : "0x" + value.ToString("x", CultureInfo.InvariantCulture);
}

/// <summary>What an L2 entry says of its whole cluster.</summary>
internal enum Qcow2ClusterType
{
    /// <summary>Offset 0: read the backing file (or zeros).</summary>
    Unallocated,

    /// <summary>Zero flag with offset 0: zeros, the backing file is not consulted.</summary>
    ZeroPlain,

    /// <summary>Zero flag with an offset: zeros; the host cluster stays allocated and its stale bytes are never read.</summary>
    ZeroAllocated,

    /// <summary>Host data at the offset.</summary>
    Normal,

    /// <summary>A compressed-cluster descriptor.</summary>
    Compressed,
}

/// <summary>What one subcluster (or the whole cluster of a standard L2 table) reads as.</summary>
internal enum Qcow2SubclusterType
{
    /// <summary>Host data.</summary>
    Normal,

    /// <summary>Zeros, no host space.</summary>
    ZeroPlain,

    /// <summary>Zeros over allocated host space.</summary>
    ZeroAllocated,

    /// <summary>Backing file, no host space.</summary>
    UnallocatedPlain,

    /// <summary>Backing file, inside an allocated host cluster.</summary>
    UnallocatedAllocated,

    /// <summary>Part of a compressed cluster.</summary>
    Compressed,

    /// <summary>The bitmap contradicts itself or the cluster entry: reads fail.</summary>
    Invalid,
}
