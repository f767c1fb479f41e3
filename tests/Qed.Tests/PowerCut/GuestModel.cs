namespace Qed.Tests.PowerCut;

/// <summary>
/// The guest's view of one session: its baseline and requests, and the rule a crash state must meet. A request whose log
/// operations all precede the crash state's durable point reads back exactly; any other request that may have started
/// leaves each of its sectors either as it was or as it wrote it, never anything else.
/// </summary>
internal sealed class GuestModel
{
    public const int SectorSize = 512;

    public GuestModel(long diskSize, int clusterSize, GuestBaseline baseline, IReadOnlyList<GuestOp> ops, IEnumerable<(long Start, long End)>? extraRegions = null)
    {
        DiskSize = diskSize;
        ClusterSize = clusterSize;
        Baseline = baseline;
        Ops = ops;
        foreach (var op in ops.Where(o => o.ChangesData))
        {
            if (op.Offset % SectorSize != 0 || op.Length % SectorSize != 0)
            {
                throw new ArgumentException($"guest requests must be sector aligned: {op}");
            }
        }
        // Every cluster a request touched (copy-up fills the rest of it), and whatever the caller adds.
        var regions = ops.Where(o => o.ChangesData && o.Length > 0)
            .Select(o => (Start: o.Offset / clusterSize * clusterSize, End: Math.Min(diskSize, (o.End + clusterSize - 1) / clusterSize * clusterSize)))
            .Concat(extraRegions ?? [])
            .OrderBy(r => r.Start)
            .ToList();
        var merged = new List<(long Start, long End)>();
        foreach (var region in regions)
        {
            if (merged.Count > 0 && region.Start <= merged[^1].End)
            {
                merged[^1] = (merged[^1].Start, Math.Max(merged[^1].End, region.End));
            }
            else
            {
                merged.Add(region);
            }
        }
        Regions = merged;
    }

    public long DiskSize { get; }

    public int ClusterSize { get; }

    public GuestBaseline Baseline { get; }

    public IReadOnlyList<GuestOp> Ops { get; }

    /// <summary>Cluster-aligned guest ranges that the session may have changed: everything else must stay unallocated.</summary>
    public IReadOnlyList<(long Start, long End)> Regions { get; }

    /// <summary>The content of <c>[start, start + length)</c> once every request in <c>[0, Durable)</c> of the log applied.</summary>
    public byte[] Exact(long start, int length, int durable)
    {
        byte[] bytes = new byte[length];
        Baseline.Fill(start, bytes);
        foreach (var op in Ops)
        {
            if (op.ChangesData && op.LogEnd <= durable)
            {
                Apply(op, bytes, start);
            }
        }
        return bytes;
    }

    /// <summary>Checks what the image reads at <c>[start, start + actual.Length)</c>; returns null when every sector is legal, else why not.</summary>
    public string? Check(ReadOnlySpan<byte> actual, long start, int durable, int visible)
    {
        byte[] exact = Exact(start, actual.Length, durable);
        long end = start + actual.Length;
        var candidates = Ops.Where(o => o.ChangesData && o.LogEnd > durable && o.LogStart < visible && o.Offset < end && o.End > start).ToList();
        Span<byte> other = stackalloc byte[SectorSize];
        for (int s = 0; s < actual.Length; s += SectorSize)
        {
            var sector = actual.Slice(s, SectorSize);
            if (sector.SequenceEqual(exact.AsSpan(s, SectorSize)))
            {
                continue;
            }
            long guest = start + s;
            bool legal = false;
            foreach (var op in candidates)
            {
                if (op.Offset <= guest && guest < op.End)
                {
                    NewContent(op, other, guest);
                    if (sector.SequenceEqual(other))
                    {
                        legal = true;
                        break;
                    }
                }
            }
            if (!legal)
            {
                var covering = candidates.Where(o => o.Offset <= guest && guest < o.End).ToList();
                return $"guest sector 0x{guest:x} reads {GuestPattern.Describe(sector)}; it may only read {GuestPattern.Describe(exact.AsSpan(s, SectorSize))}"
                    + (covering.Count == 0 ? " (no unfinished request covers it)" : $" or the data of an unfinished request: {string.Join("; ", covering)}");
            }
        }
        return null;
    }

    private static void NewContent(GuestOp op, Span<byte> sector, long guest)
    {
        if (op.Kind == GuestOpKind.Write)
        {
            GuestPattern.Fill(sector, op.Id, guest);
        }
        else
        {
            sector.Clear();
        }
    }

    private static void Apply(GuestOp op, Span<byte> bytes, long start)
    {
        long from = Math.Max(op.Offset, start), to = Math.Min(op.End, start + bytes.Length);
        if (from >= to)
        {
            return;
        }
        var part = bytes.Slice((int)(from - start), (int)(to - from));
        if (op.Kind == GuestOpKind.Write)
        {
            GuestPattern.Fill(part, op.Id, from);
        }
        else
        {
            part.Clear();
        }
    }
}
