using BenchmarkDotNet.Attributes;
using Qed.Tables;

namespace Qed.Benchmarks;

/// <summary>L2 cache lookups: a hit, and a miss that loads and evicts.</summary>
[MemoryDiagnoser]
public class CacheBenchmarks
{
    private static readonly Func<L2CacheEntry, bool, CancellationToken, ValueTask> s_load = (_, _, _) => ValueTask.CompletedTask;
    private L2TableCache _cache = null!;
    private ulong _next;

    [GlobalSetup]
    public void Setup()
    {
        _cache = new L2TableCache(1024);
        for (ulong i = 0; i < 1024; i++)
        {
            _cache.Release(_cache.GetAsync(i * 4096, 4096, s_load, useAsync: false, default).GetAwaiter().GetResult());
        }
        _next = 1 << 30;
    }

    [Benchmark]
    public void Hit() => _cache.Release(_cache.GetAsync(512 * 4096, 4096, s_load, useAsync: false, default).GetAwaiter().GetResult());

    [Benchmark]
    public void MissWithEviction()
    {
        _next += 4096;
        _cache.Release(_cache.GetAsync(_next, 4096, s_load, useAsync: false, default).GetAwaiter().GetResult());
    }
}
