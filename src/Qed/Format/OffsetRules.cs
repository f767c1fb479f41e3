namespace Qed.Format;

/// <summary>Validity of cluster and table offsets read from disk (QED-FORMAT.md §2.3).</summary>
/// <remarks>Unlike QEMU, a table of one cluster is accepted (QEMU's overflow guard rejects every <c>ts = 1</c> table) and the overflow guard is done properly.</remarks>
internal static class OffsetRules
{
    /// <summary>The unit QEMU's block layer measures files in: a file's length is rounded up to it.</summary>
    private const long SectorSize = 512;

    /// <summary>
    /// QEMU's <c>file_size</c> (§1.6): the file length rounded up to a whole 512-byte sector, as QEMU's block layer
    /// reports it, then down to a cluster. Offsets below it are inside the file, allocation starts there, and a last
    /// cluster short by less than a sector counts as present (its missing bytes read as zeros).
    /// </summary>
    public static long FileSize(long fileLength, in QedGeometry geometry)
    {
        long sectors = fileLength > long.MaxValue - (SectorSize - 1) ? long.MaxValue & ~(SectorSize - 1) : (fileLength + SectorSize - 1) & ~(SectorSize - 1);
        return sectors & ~geometry.ClusterMask;
    }

    /// <summary>A cluster offset is valid when cluster aligned, past the header area and before the allocation pointer.</summary>
    public static bool IsValidCluster(ulong offset, in QedGeometry geometry, ulong headerBytes, ulong fileSize) =>
        (offset & (ulong)geometry.ClusterMask) == 0 && offset >= headerBytes && offset < fileSize;

    /// <summary>A table offset is valid when its first and its last cluster are valid cluster offsets.</summary>
    public static bool IsValidTable(ulong offset, in QedGeometry geometry, ulong headerBytes, ulong fileSize)
    {
        ulong tail = (ulong)(geometry.TableSize - 1) * (ulong)geometry.ClusterSize;
        if (offset > ulong.MaxValue - tail)
        {
            return false;
        }
        return IsValidCluster(offset, geometry, headerBytes, fileSize) && IsValidCluster(offset + tail, geometry, headerBytes, fileSize);
    }
}
