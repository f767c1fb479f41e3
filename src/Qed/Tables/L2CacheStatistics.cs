namespace Qed.Tables;

/// <summary>A snapshot of the L2 cache's counters.</summary>
/// <param name="Hits">Lookups that found their slice cached.</param>
/// <param name="Misses">Lookups that read their slice from disk (once per slice, however many requests waited for it).</param>
/// <param name="Evictions">Slices dropped to make room.</param>
/// <param name="Count">Slices cached now.</param>
/// <param name="Capacity">Slices kept when none is in use.</param>
/// <param name="SliceBytes">Bytes per slice.</param>
public readonly record struct L2CacheStatistics(long Hits, long Misses, long Evictions, int Count, int Capacity, int SliceBytes);
