using Qed.Tables;

namespace Qed.Tests.Concurrency;

/// <summary>Under concurrency and constant eviction, an entry that a request holds stays in the cache, and is the one entry for its offset.</summary>
public class CachePinningTests
{
    private static readonly Func<L2CacheEntry, bool, CancellationToken, ValueTask> s_load = async (entry, useAsync, _) =>
    {
        if (useAsync)
        {
            await Task.Yield();
        }
        entry.Table[0] = (byte)(entry.Offset >> 12);
    };

    [Fact]
    public async Task Entries_in_use_are_never_evicted_while_threads_thrash_a_three_slice_cache()
    {
        var cache = new L2TableCache(3);
        using var start = new ManualResetEventSlim(false);
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var workers = Enumerable.Range(0, 6).Select(t => Task.Factory.StartNew(async () =>
        {
            start.Wait();
            var random = new Random(t);
            for (int i = 0; i < 20000; i++)
            {
                ulong offset = (ulong)random.Next(12) << 12;
                bool useAsync = (i & 1) == 0;
                var held = await cache.GetAsync(offset, 64, s_load, useAsync, CancellationToken.None);
                var again = cache.Find(offset);
                if (!ReferenceEquals(again, held) || held.Table[0] != (byte)(offset >> 12))
                {
                    failures.Enqueue($"thread {t}: entry 0x{offset:x} held but {(again is null ? "evicted" : "replaced")}");
                }
                if (again is not null)
                {
                    cache.Release(again);
                }
                cache.Release(held);
            }
        }, TaskCreationOptions.LongRunning).Unwrap()).ToArray();
        start.Set();
        await Task.WhenAll(workers);
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(5)));
        Assert.True(cache.Evictions > 1000, $"only {cache.Evictions} evictions: the test did not thrash the cache");
        Assert.True(cache.Count <= 3, $"{cache.Count} entries left with none in use");
    }
}
