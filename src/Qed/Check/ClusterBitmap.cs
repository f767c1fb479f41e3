using System.Numerics;

namespace Qed.Check;

/// <summary>A set of cluster indices stored in 64 Ki-bit pages allocated on first use, so memory follows the clusters referenced, not the (possibly huge, sparse, hostile) file length.</summary>
internal sealed class ClusterBitmap
{
    private const int PageBits = 1 << 16;
    private readonly Dictionary<long, ulong[]> _pages = new();

    /// <summary>Number of indices set.</summary>
    public long Count { get; private set; }

    /// <summary>Sets <paramref name="index"/>; returns false when it was already set.</summary>
    public bool Set(long index)
    {
        long page = index / PageBits;
        int bit = (int)(index % PageBits);
        if (!_pages.TryGetValue(page, out var words))
        {
            words = new ulong[PageBits / 64];
            _pages.Add(page, words);
        }
        ulong mask = 1UL << (bit & 63);
        if ((words[bit >> 6] & mask) != 0)
        {
            return false;
        }
        words[bit >> 6] |= mask;
        Count++;
        return true;
    }

    /// <summary>True when <paramref name="index"/> is set.</summary>
    public bool IsSet(long index) =>
        _pages.TryGetValue(index / PageBits, out var words) && (words[(int)(index % PageBits) >> 6] & (1UL << (int)(index % PageBits & 63))) != 0;

    /// <summary>Number of indices set in [<paramref name="start"/>, <paramref name="end"/>).</summary>
    public long CountInRange(long start, long end)
    {
        long count = 0;
        foreach (var (page, words) in _pages)
        {
            long pageStart = page * PageBits;
            if (pageStart + PageBits <= start || pageStart >= end)
            {
                continue;
            }
            if (pageStart >= start && pageStart + PageBits <= end)
            {
                foreach (ulong word in words)
                {
                    count += BitOperations.PopCount(word);
                }
                continue;
            }
            for (long i = Math.Max(start, pageStart); i < Math.Min(end, pageStart + PageBits); i++)
            {
                if (IsSet(i))
                {
                    count++;
                }
            }
        }
        return count;
    }

    /// <summary>The highest index set, or -1.</summary>
    public long Highest()
    {
        long best = -1;
        foreach (var (page, words) in _pages)
        {
            for (int w = words.Length - 1; w >= 0; w--)
            {
                if (words[w] != 0)
                {
                    best = Math.Max(best, page * PageBits + w * 64 + 63 - BitOperations.LeadingZeroCount(words[w]));
                    break;
                }
            }
        }
        return best;
    }
}
