using Microsoft.Win32.SafeHandles;
using Qed.CrashWriter;
using Qed.Image;

namespace Qed.Tests.Crash;

/// <summary>
/// A QED image with plenty for a repair to do, so that a repair takes long enough to be killed half-way and leaves
/// evidence of how far it got: the need-check bit set, invalid entries in every one of many L2 tables (the repair
/// rewrites each table, in L1 order), two invalid L1 entries (the L1 table is rewritten after every L2 table), and
/// leaked clusters at the end of the file (cut off after that). Valid data clusters hold known bytes.
/// </summary>
internal sealed class DirtyImage
{
    private const ulong NeedCheck = 0x02;
    private const int FeaturesOffset = 16;
    private const long ZeroCluster = 1;

    private readonly List<long> _plantedEntries = [];

    private DirtyImage(int clusterSize, int tableSize)
    {
        ClusterSize = clusterSize;
        TableSize = tableSize;
    }

    public int ClusterSize { get; }

    public int TableSize { get; }

    /// <summary>For each L2 table, in the order the repair visits them, the file offset of an invalid entry the repair zeroes when it rewrites that table.</summary>
    public long[] TableMarkers { get; private set; } = [];

    /// <summary>File offset of an invalid L1 entry: zeroed when the repair rewrites the L1 table, after every L2 table.</summary>
    public long L1Marker { get; private set; }

    /// <summary>File length with the leaked clusters at the end.</summary>
    public long Length { get; private set; }

    /// <summary>File length once a repair cut the leaked clusters off.</summary>
    public long RepairedLength { get; private set; }

    /// <summary>Invalid entries planted: the corruptions a check counts before any repair.</summary>
    public int PlantedCorruptions => _plantedEntries.Count;

    /// <summary>Data clusters: guest offset, file offset and the seed of their bytes (<see cref="CrashOp.FillBuffer"/>).</summary>
    public List<(long Guest, long Host, int Fill)> Data { get; } = [];

    /// <summary>Guest offsets of clusters under invalid L2 entries: they read as zeros once repaired.</summary>
    public List<long> InvalidGuests { get; } = [];

    /// <summary>Builds the image at <paramref name="path"/> with <paramref name="tables"/> L2 tables.</summary>
    public static DirtyImage Build(string path, int clusterSize, int tableSize, int tables, int seed)
    {
        var random = new Random(seed);
        var dirty = new DirtyImage(clusterSize, tableSize);
        int entries = tableSize * clusterSize / 8;
        long coverage = (long)entries * clusterSize;
        int stride = entries / tables;
        Assert.True(stride >= 1, $"{tables} tables do not fit in an L1 table of {entries} entries");
        QedImage.Create(path, new QedCreateOptions { Size = (long)tables * stride * coverage, ClusterSize = clusterSize, TableSize = tableSize });

        // Data through the engine: it allocates the tables and lays them out as a writer would.
        var dataIndices = new List<int>[tables];
        byte[] buffer = new byte[clusterSize];
        using (var image = QedImage.Open(path))
        {
            for (int t = 0; t < tables; t++)
            {
                dataIndices[t] = [.. Enumerable.Range(0, 1 + random.Next(2)).Select(_ => random.Next(entries)).Distinct()];
                foreach (int index in dataIndices[t])
                {
                    long guest = (long)t * stride * coverage + (long)index * clusterSize;
                    var op = new CrashOp(CrashOpKind.Write, guest, clusterSize, random.Next());
                    op.FillBuffer(buffer);
                    image.Write(buffer, guest);
                    dirty.Data.Add((guest, 0, op.Fill));
                }
            }
        }

        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
        long written = RandomAccess.GetLength(file);
        int leaked = 1 + random.Next(8);
        dirty.Length = written + (long)leaked * clusterSize;
        dirty.RepairedLength = written;
        long BeyondEnd() => dirty.Length + random.Next(1, 1 << 16) * (long)clusterSize;

        byte[] l1 = new byte[entries * 8];
        RandomAccess.Read(file, l1, clusterSize);
        byte[] table = new byte[entries * 8];
        var markers = new long[tables];
        for (int t = 0; t < tables; t++)
        {
            long tableOffset = (long)BitConverter.ToUInt64(l1, t * stride * 8);
            RandomAccess.Read(file, table, tableOffset);
            foreach (int index in dataIndices[t])
            {
                int at = dirty.Data.FindIndex(d => d.Guest == (long)t * stride * coverage + (long)index * clusterSize);
                dirty.Data[at] = dirty.Data[at] with { Host = (long)BitConverter.ToUInt64(table, index * 8) };
            }
            var taken = new HashSet<int>(dataIndices[t]);
            var free = new List<int>();
            while (free.Count < 16)
            {
                int index = random.Next(entries);
                if (taken.Add(index))
                {
                    free.Add(index);
                }
            }
            long someData = (long)BitConverter.ToUInt64(table, dataIndices[t][0] * 8);
            int invalid = 1 + random.Next(12);
            for (int k = 0; k < free.Count; k++)
            {
                // Beyond the end of the file, or inside it but not cluster aligned: both invalid; the rest zero clusters (valid).
                long value = k >= invalid ? ZeroCluster : k % 2 == 0 ? BeyondEnd() : someData + 512;
                BitConverter.TryWriteBytes(table.AsSpan(free[k] * 8), value);
                if (k < invalid)
                {
                    dirty._plantedEntries.Add(tableOffset + free[k] * 8);
                    dirty.InvalidGuests.Add((long)t * stride * coverage + (long)free[k] * clusterSize);
                }
            }
            markers[t] = tableOffset + free[0] * 8;
            RandomAccess.Write(file, table, tableOffset);
        }
        dirty.TableMarkers = markers;

        // Two L1 entries no table uses: one beyond the end of the file (the marker), one unaligned inside it.
        int[] unused = [.. Enumerable.Range(0, entries).Where(i => i % stride != 0 || i / stride >= tables).OrderBy(_ => random.Next()).Take(2)];
        BitConverter.TryWriteBytes(l1.AsSpan(unused[0] * 8), BeyondEnd());
        BitConverter.TryWriteBytes(l1.AsSpan(unused[1] * 8), (long)clusterSize * 2 + 4096 / 2);
        RandomAccess.Write(file, l1, clusterSize);
        dirty.L1Marker = clusterSize + unused[0] * 8L;
        dirty._plantedEntries.Add(dirty.L1Marker);
        dirty._plantedEntries.Add(clusterSize + unused[1] * 8L);

        byte[] garbage = new byte[leaked * clusterSize];
        random.NextBytes(garbage);
        RandomAccess.Write(file, garbage, written);

        byte[] features = new byte[8];
        RandomAccess.Read(file, features, FeaturesOffset);
        BitConverter.TryWriteBytes(features, BitConverter.ToUInt64(features) | NeedCheck);
        RandomAccess.Write(file, features, FeaturesOffset);
        return dirty;
    }

    /// <summary>What a file built from this image shows of the repair's progress.</summary>
    public RepairState StateOf(string path)
    {
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        return new RepairState(
            NeedCheckSet: (ReadU64(file, FeaturesOffset) & NeedCheck) != 0,
            TablesFixed: TableMarkers.Count(marker => ReadU64(file, marker) == 0),
            L1Fixed: ReadU64(file, L1Marker) == 0,
            Truncated: RandomAccess.GetLength(file) < Length,
            Remaining: _plantedEntries.Count(entry => ReadU64(file, entry) != 0));
    }

    /// <summary>Reads the little-endian u64 at <paramref name="offset"/> (0 past the end of the file).</summary>
    public static ulong ReadU64(SafeFileHandle file, long offset)
    {
        Span<byte> bytes = stackalloc byte[8];
        bytes.Clear();
        RandomAccess.Read(file, bytes, offset);
        return BitConverter.ToUInt64(bytes);
    }
}

/// <summary>How far a repair got, read from the file: the need-check bit, L2 tables rewritten, the L1 table rewritten, leaks cut off, invalid entries left.</summary>
internal readonly record struct RepairState(bool NeedCheckSet, int TablesFixed, bool L1Fixed, bool Truncated, int Remaining)
{
    /// <summary>True when the file shows no sign of a repair yet.</summary>
    public bool Untouched => NeedCheckSet && TablesFixed == 0 && !L1Fixed && !Truncated;

    /// <summary>True when the repair had written something but not yet cleared the need-check bit: killed during it.</summary>
    public bool InRepair => NeedCheckSet && !Untouched;
}
