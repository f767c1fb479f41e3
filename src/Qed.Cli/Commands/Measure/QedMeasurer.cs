using System.Buffers;
using Qed.Extents;
using Qed.Format;
using Qed.Formats;
using Qed.Formats.Qed;
using Qed.IO;

namespace Qed.Cli.Commands.Measure;

/// <summary>
/// The file sizes of a QED image: the one <c>qed convert -O qed</c> writes for a source (required) and the one an image of
/// the same virtual size reaches once every cluster has been written (fully allocated).
/// </summary>
/// <remarks>
/// A new QED file is its header cluster and its L1 table (<c>table_size</c> clusters). Convert then writes each output
/// cluster that holds a non-zero byte, and the first write under an L2 table allocates that table (<c>table_size</c>
/// clusters); nothing else grows the file. So:
/// 1. The source's extent map is walked; ranges that read as zeros (zero clusters, holes, unallocated) cost nothing and
///    are not read.
/// 2. Data extents are read in pieces of at most <see cref="PieceSize"/> and tested for zeros one output cluster at a
///    time, aligned to the disk as convert aligns them; an output cluster counts once, however many source extents it
///    straddles (extents come in disk order, so remembering the last cluster counted is enough).
/// 3. L2 tables are counted the same way, by the index of the table that maps each counted cluster.
/// </remarks>
internal static class QedMeasurer
{
    private const int PieceSize = 1 << 20;

    /// <summary>Measures an image made with <paramref name="options"/> (already validated) holding a copy of <paramref name="source"/>'s disk, or blank when null.</summary>
    /// <remarks>The fully allocated size of the largest images passes 2^63 (a 2^63-byte disk plus its tables), hence the wide type.</remarks>
    public static (UInt128 Required, UInt128 FullyAllocated) Measure(ImageCreateOptions options, BlockDevice? source)
    {
        var geometry = new QedGeometry(
            (int)options.Settings.GetValueOrDefault(QedFormat.ClusterSizeName, QedGeometry.DefaultClusterSize),
            (int)options.Settings.GetValueOrDefault(QedFormat.TableSizeName, QedGeometry.DefaultTableSize));
        long size = (options.Size + 511) & ~511L;
        long empty = (long)geometry.ClusterSize + geometry.TableBytes;
        long tables = size == 0 ? 0 : (size - 1) / geometry.L2Span + 1;
        UInt128 fullyAllocated = (UInt128)empty + (UInt128)tables * (ulong)geometry.TableBytes + (UInt128)geometry.ClustersFor(size) * (ulong)geometry.ClusterSize;
        if (source is null)
        {
            return ((UInt128)empty, fullyAllocated);
        }
        var (clusters, l2Tables) = CountWrittenClusters(source, geometry);
        return ((UInt128)empty + (UInt128)l2Tables * (ulong)geometry.TableBytes + (UInt128)clusters * (ulong)geometry.ClusterSize, fullyAllocated);
    }

    /// <summary>The output clusters holding a non-zero byte of <paramref name="source"/>'s disk, and the L2 tables that map them.</summary>
    private static (long Clusters, long Tables) CountWrittenClusters(BlockDevice source, QedGeometry geometry)
    {
        long clusters = 0;
        long tables = 0;
        long lastCluster = -1;
        long lastTable = -1;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(PieceSize);
        try
        {
            foreach (var extent in ExtentMap.Enumerate(source))
            {
                if (!extent.IsData)
                {
                    continue;
                }
                long position = extent.Offset;
                while (position < extent.End)
                {
                    long pieceEnd = Math.Min(extent.End, (position & ~(long)(PieceSize - 1)) + PieceSize);
                    // Skip what lies in a cluster already counted: it cannot change the answer.
                    if (position >> geometry.ClusterBits <= lastCluster)
                    {
                        position = Math.Min(pieceEnd, (lastCluster + 1) << geometry.ClusterBits);
                        continue;
                    }
                    int length = (int)(pieceEnd - position);
                    source.Read(buffer.AsMemory(0, length), position);
                    for (long at = position; at < pieceEnd;)
                    {
                        long cluster = at >> geometry.ClusterBits;
                        long segmentEnd = Math.Min(pieceEnd, (cluster + 1) << geometry.ClusterBits);
                        if (cluster > lastCluster && buffer.AsSpan((int)(at - position), (int)(segmentEnd - at)).IndexOfAnyExcept((byte)0) >= 0)
                        {
                            clusters++;
                            lastCluster = cluster;
                            long table = cluster / geometry.TableEntries;
                            if (table != lastTable)
                            {
                                tables++;
                                lastTable = table;
                            }
                        }
                        at = segmentEnd;
                    }
                    position = pieceEnd;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return (clusters, tables);
    }
}
