namespace Qed.Formats.Qcow2.Compression;

/// <summary>
/// Where a compressed cluster's bytes lie in the image file (QCOW2.md §5.5): bits 0-61 of an L2 entry with bit 62
/// set. With <c>s = 70 - cluster_bits</c>, bits 0..s-1 are the host byte offset and bits s..61 count the 512-byte
/// sectors after the first one; the span runs from the offset to the end of the sector holding its last byte.
/// </summary>
/// <param name="HostOffset">Byte offset of the compressed data in the image file (any alignment).</param>
/// <param name="Length">Bytes to read from <paramref name="HostOffset"/>; the stream may end before them.</param>
internal readonly record struct Qcow2CompressedDescriptor(ulong HostOffset, int Length)
{
    /// <summary>Bit 62 of an L2 entry: the entry is a compressed-cluster descriptor.</summary>
    public const ulong CompressedFlag = 1UL << 62;

    /// <summary>The sector unit of the descriptor's count, whatever the cluster size.</summary>
    public const int SectorSize = 512;

    private const int SectorBits = 9;
    private const ulong DescriptorMask = (1UL << 62) - 1;

    /// <summary>Smallest and largest cluster_bits a descriptor can be laid out for (512 B to 2 MiB).</summary>
    public const int MinClusterBits = 9, MaxClusterBits = 21;

    /// <summary>Splits bits 0-61 of <paramref name="l2Entry"/> (bits 62-63 are ignored) into offset and length.</summary>
    public static Qcow2CompressedDescriptor Decode(ulong l2Entry, int clusterBits)
    {
        CheckClusterBits(clusterBits);
        int shift = CountShift(clusterBits);
        ulong descriptor = l2Entry & DescriptorMask;
        ulong hostOffset = descriptor & ((1UL << shift) - 1);
        ulong additionalSectors = descriptor >> shift; // the rest of bits s..61: cluster_bits - 8 bits wide
        // At most 2^13 sectors (2 MiB clusters): the length fits an int with room to spare.
        int length = (int)((additionalSectors + 1) * SectorSize - (hostOffset & (SectorSize - 1)));
        return new Qcow2CompressedDescriptor(hostOffset, length);
    }

    /// <summary>
    /// The L2 entry (bit 62 set, bit 63 clear) for <paramref name="compressedLength"/> bytes stored at
    /// <paramref name="hostOffset"/>; the count is the number of sectors after the first that the bytes touch.
    /// </summary>
    public static ulong Encode(ulong hostOffset, int compressedLength, int clusterBits)
    {
        CheckClusterBits(clusterBits);
        int shift = CountShift(clusterBits);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(hostOffset, 1UL << shift);
        ArgumentOutOfRangeException.ThrowIfLessThan(compressedLength, 1);
        ulong additionalSectors = ((hostOffset + (ulong)compressedLength - 1) >> SectorBits) - (hostOffset >> SectorBits);
        if (additionalSectors >= 1UL << (clusterBits - 8))
        {
            throw new ArgumentOutOfRangeException(nameof(compressedLength), compressedLength,
                $"a compressed span of {compressedLength} bytes at 0x{hostOffset:x} does not fit a descriptor for {1 << clusterBits}-byte clusters");
        }
        return CompressedFlag | (additionalSectors << shift) | hostOffset;
    }

    /// <summary>Index of the first host cluster the span touches (it gets one refcount per descriptor).</summary>
    public long FirstCluster(int clusterBits) => (long)(HostOffset >> clusterBits);

    /// <summary>Index of the last host cluster the span touches (the span may cross into the next cluster).</summary>
    public long LastCluster(int clusterBits) => (long)((HostOffset + (ulong)Length - 1) >> clusterBits);

    /// <summary>Offset of the first byte after the span.</summary>
    public ulong EndOffset => HostOffset + (ulong)Length;

    private static int CountShift(int clusterBits) => 70 - clusterBits;

    private static void CheckClusterBits(int clusterBits)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(clusterBits, MinClusterBits);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(clusterBits, MaxClusterBits);
    }
}
