namespace Qed.Nbd.Client;

/// <summary>
/// The parts of one READ that chunks have filled so far, as sorted disjoint intervals relative to the request's offset:
/// refuses a chunk that overlaps one already received (NBD.md 2.3) and counts the bytes covered, so that a reply that
/// ends with a gap is caught.
/// </summary>
internal sealed class NbdReadCoverage
{
    // Merged intervals [Start, End), sorted; chunks usually arrive in order, so this stays a list of one.
    private readonly List<(ulong Start, ulong End)> _intervals = new(1);

    /// <summary>Bytes covered.</summary>
    public ulong Covered { get; private set; }

    /// <summary>Adds <c>[start, start + length)</c>; false (nothing added) when it overlaps what is covered.</summary>
    public bool TryAdd(ulong start, ulong length)
    {
        ulong end = start + length;
        // First interval that starts at or after start.
        int lo = 0, hi = _intervals.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_intervals[mid].Start < start)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        int next = lo;
        if (next > 0 && _intervals[next - 1].End > start)
        {
            return false;
        }
        if (next < _intervals.Count && _intervals[next].Start < end)
        {
            return false;
        }
        Covered += length;
        bool joinsPrevious = next > 0 && _intervals[next - 1].End == start;
        bool joinsNext = next < _intervals.Count && _intervals[next].Start == end;
        if (joinsPrevious && joinsNext)
        {
            _intervals[next - 1] = (_intervals[next - 1].Start, _intervals[next].End);
            _intervals.RemoveAt(next);
        }
        else if (joinsPrevious)
        {
            _intervals[next - 1] = (_intervals[next - 1].Start, end);
        }
        else if (joinsNext)
        {
            _intervals[next] = (start, _intervals[next].End);
        }
        else
        {
            _intervals.Insert(next, (start, end));
        }
        return true;
    }
}
