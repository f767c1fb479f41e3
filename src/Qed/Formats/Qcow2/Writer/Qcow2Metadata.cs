using System.Buffers.Binary;
using Qed.Formats.Qcow2.Compression;

namespace Qed.Formats.Qcow2.Writer;

/// <summary>
/// The metadata of a <see cref="Qcow2TargetImage"/> at one flush, laid out after everything the image has allocated and
/// serialized: L2 tables, the L1 table, refcount blocks, the refcount table, and the header (QCOW2.md §12).
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>The metadata starts at the first whole cluster after <c>end</c>, in this order: one L2 table per L1 entry that
/// maps anything (in L1 order), the L1 table, B refcount blocks, T refcount table clusters.</item>
/// <item>B and T cover the whole file, themselves included: starting from 1 and 1, with M the clusters of the file,
/// B = ceil(M / refcounts per block) and T = ceil(8B / cluster size) are recomputed until they stop growing (§12.2;
/// two or three rounds).</item>
/// <item>Refcounts are counted from the mapping: cluster 0, each L2 table, L1 cluster, refcount block and refcount table
/// cluster once; each data cluster once per entry that points to it; each host cluster once per compressed cluster whose
/// bytes touch it. Every other cluster of the file (replaced data, earlier metadata) counts 0.</item>
/// <item>Every L1 and L2 entry with a host cluster carries COPIED (its refcount is 1); compressed entries never do.</item>
/// </list>
/// </remarks>
internal sealed class Qcow2Metadata
{
    private const ulong CopiedFlag = 1UL << 63;
    private const ulong CompressedFlag = 1UL << 62;
    private const ulong OffsetMask = 0x00FF_FFFF_FFFF_FE00;

    private Qcow2Metadata(List<(long, byte[])> pieces, byte[] header, long end)
    {
        Pieces = pieces;
        Header = header;
        End = end;
    }

    /// <summary>The tables to write, at their file offsets.</summary>
    public IReadOnlyList<(long Offset, byte[] Bytes)> Pieces { get; }

    /// <summary>Cluster 0's bytes, written last.</summary>
    public byte[] Header { get; }

    /// <summary>The end of the file once the metadata is written (a whole number of clusters).</summary>
    public long End { get; }

    /// <summary>Lays out and serializes the metadata of the mapping <paramref name="l2"/> of an image whose allocations end at <paramref name="end"/>.</summary>
    /// <exception cref="QedUnsupportedException">The file would need a refcount table above QEMU's 8 MiB limit.</exception>
    public static Qcow2Metadata Build(Qcow2CreateSettings settings, ulong[]?[] l2, long end)
    {
        int clusterBits = settings.ClusterBits;
        long clusterSize = settings.ClusterSize;
        bool extended = settings.ExtendedL2;
        int entryWords = extended ? 2 : 1;
        long first = (end + clusterSize - 1) >> clusterBits;
        int tables = l2.Count(t => t is not null);
        long l1Clusters = ((long)settings.L1Size * 8 + clusterSize - 1) >> clusterBits;
        long refcountsPerBlock = clusterSize * 8 / settings.RefcountBits;

        long blocks = 1, tableClusters = 1, total;
        while (true)
        {
            total = first + tables + l1Clusters + blocks + tableClusters;
            long neededBlocks = (total + refcountsPerBlock - 1) / refcountsPerBlock;
            long neededTable = (neededBlocks * 8 + clusterSize - 1) >> clusterBits;
            if (neededBlocks <= blocks && neededTable <= tableClusters)
            {
                break;
            }
            blocks = Math.Max(blocks, neededBlocks);
            tableClusters = Math.Max(tableClusters, neededTable);
        }
        if (tableClusters * clusterSize > Qcow2Header.MaxRefcountTableBytes)
        {
            throw new QedUnsupportedException("The image would need a refcount table larger than 8 MiB, which QEMU refuses (try a larger cluster size)");
        }
        long l2Start = first;
        long l1Start = l2Start + tables;
        long blockStart = l1Start + l1Clusters;
        long tableStart = blockStart + blocks;

        var counts = new int[total];
        counts[0] = 1;
        var pieces = new List<(long, byte[])>(tables + 3);
        byte[] l1 = new byte[l1Clusters * clusterSize];
        long next = l2Start;
        for (int i = 0; i < l2.Length; i++)
        {
            if (l2[i] is not { } table)
            {
                continue;
            }
            long tableOffset = next++ << clusterBits;
            counts[tableOffset >> clusterBits]++;
            BinaryPrimitives.WriteUInt64BigEndian(l1.AsSpan(i * 8), (ulong)tableOffset | CopiedFlag);
            byte[] bytes = new byte[clusterSize];
            for (int j = 0; j < table.Length; j += entryWords)
            {
                ulong entry = table[j];
                if ((entry & CompressedFlag) != 0)
                {
                    var descriptor = Qcow2CompressedDescriptor.Decode(entry, clusterBits);
                    for (long c = descriptor.FirstCluster(clusterBits); c <= descriptor.LastCluster(clusterBits); c++)
                    {
                        counts[c]++;
                    }
                }
                else if ((entry & OffsetMask) != 0)
                {
                    counts[(long)(entry & OffsetMask) >> clusterBits]++;
                    entry |= CopiedFlag;
                }
                BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(j * 8), entry);
                if (extended)
                {
                    BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(j * 8 + 8), table[j + 1]);
                }
            }
            pieces.Add((tableOffset, bytes));
        }
        if (l1.Length > 0)
        {
            pieces.Add((l1Start << clusterBits, l1));
        }
        for (long c = l1Start; c < total; c++)
        {
            counts[c]++;
        }

        byte[] blockBytes = new byte[blocks * clusterSize];
        for (long c = 0; c < total; c++)
        {
            WriteRefcount(blockBytes, c, counts[c], settings.RefcountOrder);
        }
        pieces.Add((blockStart << clusterBits, blockBytes));
        byte[] refcountTable = new byte[tableClusters * clusterSize];
        for (long b = 0; b < blocks; b++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(refcountTable.AsSpan((int)(b * 8)), (ulong)((blockStart + b) << clusterBits));
        }
        pieces.Add((tableStart << clusterBits, refcountTable));

        byte[] header = Qcow2HeaderWriter.Build(settings, new Qcow2HeaderWriter.Tables(l1Start << clusterBits, tableStart << clusterBits, (int)tableClusters));
        return new Qcow2Metadata(pieces, header, total << clusterBits);
    }

    /// <summary>Stores refcount number <paramref name="index"/> of a run of refcount blocks: big-endian from 8 bits up, packed least significant first below (QCOW2.md §7).</summary>
    internal static void WriteRefcount(Span<byte> blocks, long index, long value, int refcountOrder)
    {
        int bits = 1 << refcountOrder;
        if (bits >= 8)
        {
            int bytes = bits / 8;
            var slot = blocks.Slice((int)(index * bytes), bytes);
            for (int i = bytes - 1; i >= 0; i--, value >>= 8)
            {
                slot[i] = (byte)value;
            }
            return;
        }
        long bit = index * bits;
        int shift = (int)(bit & 7);
        int mask = ((1 << bits) - 1) << shift;
        ref byte b = ref blocks[(int)(bit >> 3)];
        b = (byte)((b & ~mask) | (((int)value << shift) & mask));
    }
}
