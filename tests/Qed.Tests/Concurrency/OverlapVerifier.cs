namespace Qed.Tests.Concurrency;

/// <summary>
/// Checks a disk after concurrent overlapping writes that all completed. The disk is cut at every write boundary and
/// every 512-byte sector boundary, so that within a segment the set of covering writes is constant and a write's data
/// cannot legitimately change mid-segment. Each segment must then equal, as a whole:
/// <list type="number">
/// <item>the earlier content, when no write covers it;</item>
/// <item>otherwise the pattern of exactly one covering write (never a mix, never the earlier content: every write completed),</item>
/// <item>and not of a write that completed before another covering write was issued (that later one must win over it).</item>
/// </list>
/// </summary>
internal sealed class OverlapVerifier
{
    private const int SectorSize = 512;
    private const int MaxReported = 8;

    private readonly List<string> _errors = [];

    /// <summary>Segments checked.</summary>
    public long Segments { get; private set; }

    /// <summary>Segments covered by at least one write.</summary>
    public long CoveredSegments { get; private set; }

    /// <summary>Segments too short to hold a whole word, whose winner was found by trying every covering write.</summary>
    public long ShortSegments { get; private set; }

    /// <summary>The most writes covering one segment.</summary>
    public int MaxDepth { get; private set; }

    /// <summary>Segments covered by two or more writes where one had completed before another was issued: the ordering rule applied.</summary>
    public long OrderedSegments { get; private set; }

    /// <summary>Segments covered by two or more writes that ran at the same time (neither completed before the other was issued).</summary>
    public long RacedSegments { get; private set; }

    /// <summary>Errors found (the first few in detail, then a count).</summary>
    public IReadOnlyList<string> Errors => _errors;

    public long ErrorCount { get; private set; }

    public void Verify(ReadOnlySpan<byte> disk, ReadOnlySpan<byte> earlier, IReadOnlyList<TimedWrite> writes)
    {
        var boundaries = new List<long>(writes.Count * 2 + disk.Length / SectorSize + 1);
        for (long b = 0; b <= disk.Length; b += SectorSize)
        {
            boundaries.Add(b);
        }
        foreach (var w in writes)
        {
            boundaries.Add(w.Offset);
            boundaries.Add(w.End);
        }
        boundaries.Add(disk.Length);
        boundaries.Sort();

        var byStart = writes.OrderBy(w => w.Offset).ToArray();
        var byEnd = writes.OrderBy(w => w.End).ToArray();
        var active = new Dictionary<int, TimedWrite>();
        int nextStart = 0, nextEnd = 0;
        for (int i = 0; i + 1 < boundaries.Count; i++)
        {
            long start = boundaries[i], end = boundaries[i + 1];
            if (start == end)
            {
                continue;
            }
            while (nextEnd < byEnd.Length && byEnd[nextEnd].End <= start)
            {
                active.Remove(byEnd[nextEnd++].Id);
            }
            while (nextStart < byStart.Length && byStart[nextStart].Offset <= start)
            {
                var w = byStart[nextStart++];
                if (w.End > start)
                {
                    active.Add(w.Id, w);
                }
            }
            Segments++;
            CheckSegment(start, disk[(int)start..(int)end], earlier[(int)start..(int)end], active);
        }
    }

    private void CheckSegment(long offset, ReadOnlySpan<byte> actual, ReadOnlySpan<byte> earlier, Dictionary<int, TimedWrite> covering)
    {
        if (covering.Count == 0)
        {
            if (!actual.SequenceEqual(earlier))
            {
                Fail($"[0x{offset:x}, +{actual.Length}) is covered by no write but does not hold its earlier content");
            }
            return;
        }
        CoveredSegments++;
        MaxDepth = Math.Max(MaxDepth, covering.Count);
        long lastIssued = long.MinValue, firstCompleted = long.MaxValue;
        foreach (var w in covering.Values)
        {
            lastIssued = Math.Max(lastIssued, w.Issued);
            firstCompleted = Math.Min(firstCompleted, w.Completed);
        }
        if (firstCompleted < lastIssued)
        {
            OrderedSegments++;
        }
        if (covering.Count > 1 && Raced(covering.Values))
        {
            RacedSegments++;
        }

        int? claimed = WritePattern.ClaimedId(offset, actual);
        if (claimed is int id)
        {
            if (!covering.TryGetValue(id, out var winner) || !WritePattern.Matches(id, offset, actual))
            {
                Fail(actual.SequenceEqual(earlier)
                    ? $"[0x{offset:x}, +{actual.Length}) still holds its earlier content although the {covering.Count} writes covering it completed (a lost write)"
                    : $"[0x{offset:x}, +{actual.Length}) equals the pattern of none of the {covering.Count} writes covering it (a mix, stale or misplaced data; its first word names write {id})");
            }
            else if (winner.Completed < lastIssued)
            {
                Fail($"[0x{offset:x}, +{actual.Length}) holds {winner}, but a covering write was issued at {lastIssued}, after that one completed");
            }
            return;
        }

        // Too short to name its write: accept any covering write whose pattern it equals and that the order allows.
        ShortSegments++;
        bool any = false;
        foreach (var w in covering.Values)
        {
            if (WritePattern.Matches(w.Id, offset, actual))
            {
                any = true;
                if (w.Completed >= lastIssued)
                {
                    return;
                }
            }
        }
        Fail(any
            ? $"[0x{offset:x}, +{actual.Length}) holds only patterns of writes that completed before another covering write was issued (at {lastIssued})"
            : $"[0x{offset:x}, +{actual.Length}) equals the pattern of none of the {covering.Count} writes covering it");
    }

    /// <summary>True when two of the writes ran at the same time: sorted by issue, one was issued before an earlier one completed.</summary>
    private static bool Raced(IEnumerable<TimedWrite> writes)
    {
        long completed = long.MinValue;
        foreach (var w in writes.OrderBy(w => w.Issued))
        {
            if (w.Issued < completed)
            {
                return true;
            }
            completed = Math.Max(completed, w.Completed);
        }
        return false;
    }

    private void Fail(string message)
    {
        ErrorCount++;
        if (_errors.Count < MaxReported)
        {
            _errors.Add(message);
        }
    }
}
