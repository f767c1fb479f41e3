using Qed.Tables;

namespace Qed.Tests.Tables;

/// <summary>The rules of the L2 cache (QED-FORMAT.md §6, and the improvements of §6.7 we chose: LRU, pinning, single flight).</summary>
public class L2TableCacheTests
{
    private const int TableBytes = 64;

    /// <summary>A loader that stamps the table with its offset and counts its calls per offset.</summary>
    private sealed class CountingLoader
    {
        private readonly Dictionary<ulong, int> _calls = new();

        public int Total { get; private set; }

        public int CallsFor(ulong offset)
        {
            lock (_calls)
            {
                return _calls.GetValueOrDefault(offset);
            }
        }

        public ValueTask Load(L2CacheEntry entry, bool useAsync, CancellationToken cancellationToken)
        {
            lock (_calls)
            {
                _calls[entry.Offset] = _calls.GetValueOrDefault(entry.Offset) + 1;
                Total++;
            }
            TableEntry.Write(entry.Table, 0, entry.Offset);
            return ValueTask.CompletedTask;
        }
    }

    private static async Task<L2CacheEntry> Get(L2TableCache cache, ulong offset, CountingLoader loader, bool useAsync)
    {
        var task = cache.GetAsync(offset, TableBytes, loader.Load, useAsync, CancellationToken.None);
        if (!useAsync)
        {
            Assert.True(task.IsCompleted, "The sync path completes synchronously.");
        }
        return await task;
    }

    /// <summary>Loads and releases each offset in order.</summary>
    private static async Task Touch(L2TableCache cache, CountingLoader loader, bool useAsync, params ulong[] offsets)
    {
        foreach (ulong offset in offsets)
        {
            cache.Release(await Get(cache, offset, loader, useAsync));
        }
    }

    private static bool IsCached(L2TableCache cache, ulong offset)
    {
        var entry = cache.Find(offset);
        if (entry is null)
        {
            return false;
        }
        cache.Release(entry);
        return true;
    }

    [Fact]
    public void Capacity_MustBePositive()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new L2TableCache(0));
        Assert.Equal(1, new L2TableCache(1).Capacity);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Miss_LoadsOnce_ThenHits(bool useAsync)
    {
        var cache = new L2TableCache(4);
        var loader = new CountingLoader();
        var first = await Get(cache, 0x60000, loader, useAsync);
        Assert.Equal(0x60000UL, first.Offset);
        Assert.Equal(TableBytes, first.Table.Length);
        Assert.Equal(0x60000UL, first[0]);
        Assert.True(first.Ready.IsCompletedSuccessfully);
        var second = await Get(cache, 0x60000, loader, useAsync);
        Assert.Same(first, second);
        Assert.Equal(1, loader.Total);
        Assert.Equal(1, cache.Misses);
        Assert.Equal(1, cache.Hits);
        Assert.Equal(0, cache.Evictions);
        Assert.Equal(1, cache.Count);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task References_CountLookupsAndReleases(bool useAsync)
    {
        var cache = new L2TableCache(4);
        var loader = new CountingLoader();
        var a = await Get(cache, 0x1000, loader, useAsync);
        Assert.Equal(1, a.References);
        await Get(cache, 0x1000, loader, useAsync);
        Assert.Equal(2, a.References);
        Assert.Same(a, cache.Find(0x1000));
        Assert.Equal(3, a.References);
        cache.Release(a);
        cache.Release(a);
        cache.Release(a);
        Assert.Equal(0, a.References);
        Assert.True(a.InIndex, "Releasing does not remove: the table stays cached.");
        Assert.Null(cache.Find(0x2000));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task HeldEntry_IsNeverEvicted(bool useAsync)
    {
        var cache = new L2TableCache(2);
        var loader = new CountingLoader();
        var held = await Get(cache, 0x1000, loader, useAsync); // reference kept
        await Touch(cache, loader, useAsync, 0x2000, 0x3000, 0x4000, 0x5000);
        Assert.True(held.InIndex);
        Assert.True(IsCached(cache, 0x1000));
        Assert.Equal(1, loader.CallsFor(0x1000));
        Assert.Equal(2, cache.Count);
        cache.Release(held);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AllInUse_GrowsPastCapacity_ThenShrinksAtTheNextInsertion(bool useAsync)
    {
        var cache = new L2TableCache(2);
        var loader = new CountingLoader();
        var held = new List<L2CacheEntry>();
        for (ulong i = 1; i <= 5; i++)
        {
            held.Add(await Get(cache, i * 0x1000, loader, useAsync));
        }
        Assert.Equal(5, cache.Count);
        Assert.Equal(0, cache.Evictions);
        Assert.All(held, e => Assert.True(e.InIndex));

        foreach (var e in held)
        {
            cache.Release(e);
        }
        // Releasing alone does not shrink: eviction happens only when a table is inserted.
        Assert.Equal(5, cache.Count);

        await Touch(cache, loader, useAsync, 0x9000);
        Assert.Equal(2, cache.Count);
        Assert.Equal(4, cache.Evictions);
        // The newest table and the most recently used of the old ones survive.
        Assert.True(IsCached(cache, 0x9000));
        Assert.True(IsCached(cache, 0x5000));
        Assert.False(IsCached(cache, 0x1000));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task PartlyInUse_EvictsOnlyTheUnused(bool useAsync)
    {
        var cache = new L2TableCache(2);
        var loader = new CountingLoader();
        var a = await Get(cache, 0xa000, loader, useAsync); // oldest, held
        await Touch(cache, loader, useAsync, 0xb000, 0xc000);
        Assert.True(IsCached(cache, 0xa000));
        Assert.False(IsCached(cache, 0xb000));
        Assert.True(IsCached(cache, 0xc000));
        cache.Release(a);
    }

    [Fact]
    public void Insert_OfACachedOffset_KeepsTheCachedEntry()
    {
        var cache = new L2TableCache(4);
        var cached = new L2CacheEntry(0x6000, new byte[TableBytes]) { References = 1 };
        cached.MarkReady();
        Assert.Same(cached, cache.Insert(cached));
        Assert.Equal(1, cached.References);

        var newcomer = new L2CacheEntry(0x6000, new byte[TableBytes]) { References = 1 };
        newcomer.MarkReady();
        var result = cache.Insert(newcomer);
        Assert.Same(cached, result);
        Assert.Equal(2, cached.References); // the caller now holds the cached one
        Assert.Equal(0, newcomer.References); // and its reference on the newcomer was dropped
        Assert.False(newcomer.InIndex);
        Assert.Equal(1, cache.Count);
        Assert.Same(cached, cache.Find(0x6000));
    }

    [Fact]
    public void Insert_NewEntry_IsPublishedWithTheCallersReference()
    {
        var cache = new L2TableCache(1);
        var first = new L2CacheEntry(0x1000, new byte[TableBytes]) { References = 1 };
        first.MarkReady();
        Assert.Same(first, cache.Insert(first));
        Assert.True(first.InIndex);
        Assert.Equal(1, first.References);
        cache.Release(first);

        var second = new L2CacheEntry(0x2000, new byte[TableBytes]) { References = 1 };
        second.MarkReady();
        cache.Insert(second);
        Assert.False(first.InIndex); // capacity 1: the unused one went
        Assert.Equal(1, cache.Evictions);
        cache.Release(second);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Eviction_IsLeastRecentlyUsed_AHitRefreshes(bool useAsync)
    {
        var cache = new L2TableCache(3);
        var loader = new CountingLoader();
        await Touch(cache, loader, useAsync, 0x1000, 0x2000, 0x3000);
        await Touch(cache, loader, useAsync, 0x1000); // hit: 0x1000 becomes the most recent
        await Touch(cache, loader, useAsync, 0x4000); // evicts 0x2000 (QEMU's FIFO would evict 0x1000)
        Assert.True(IsCached(cache, 0x1000));
        Assert.False(IsCached(cache, 0x2000));
        Assert.True(IsCached(cache, 0x3000));
        Assert.True(IsCached(cache, 0x4000));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task QemuFifoExample_HitsUnderLru(bool useAsync)
    {
        // §6.3: tables 0..49, table 0 again (hit), table 50 (miss), table 0 again. QEMU's FIFO evicted table 0 at the
        // miss on 50, so its last read of table 0 misses; under LRU table 1 is evicted instead and table 0 hits.
        var cache = new L2TableCache(50);
        var loader = new CountingLoader();
        for (ulong t = 0; t < 50; t++)
        {
            await Touch(cache, loader, useAsync, (t + 1) * 0x4000);
        }
        Assert.Equal(50, cache.Misses);
        await Touch(cache, loader, useAsync, 0x4000);
        Assert.Equal(1, cache.Hits);
        await Touch(cache, loader, useAsync, 51 * 0x4000);
        Assert.Equal(51, cache.Misses);
        Assert.Equal(1, cache.Evictions);
        await Touch(cache, loader, useAsync, 0x4000);
        Assert.Equal(2, cache.Hits);
        Assert.Equal(51, cache.Misses);
        Assert.Equal(1, loader.CallsFor(0x4000));
        // Table 1 (offset 0x8000) was the least recently used.
        await Touch(cache, loader, useAsync, 0x8000);
        Assert.Equal(52, cache.Misses);
        Assert.Equal(2, loader.CallsFor(0x8000));
    }

    [Fact]
    public void Find_RefreshesRecency()
    {
        var cache = new L2TableCache(2);
        foreach (ulong offset in new ulong[] { 0x1000, 0x2000 })
        {
            var e = new L2CacheEntry(offset, new byte[TableBytes]) { References = 1 };
            e.MarkReady();
            cache.Release(cache.Insert(e));
        }
        cache.Release(cache.Find(0x1000)!);
        var third = new L2CacheEntry(0x3000, new byte[TableBytes]) { References = 1 };
        third.MarkReady();
        cache.Release(cache.Insert(third));
        Assert.True(IsCached(cache, 0x1000));
        Assert.False(IsCached(cache, 0x2000));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Counters_CountHitsMissesAndEvictions(bool useAsync)
    {
        var cache = new L2TableCache(2);
        var loader = new CountingLoader();
        await Touch(cache, loader, useAsync, 0x1000, 0x2000, 0x1000, 0x3000, 0x4000, 0x4000, 0x1000);
        // misses: 1000, 2000, 3000 (evicts 2000), 4000 (evicts 1000), 1000 (evicts 3000); hits: 1000, 4000.
        Assert.Equal(5, cache.Misses);
        Assert.Equal(2, cache.Hits);
        Assert.Equal(3, cache.Evictions);
        Assert.Equal(5, loader.Total);
    }

    /// <summary>A loader that blocks until released, counting how often it ran.</summary>
    private sealed class GatedLoader
    {
        private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _entered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _calls;

        public Exception? Failure { get; set; }

        public int Calls => Volatile.Read(ref _calls);

        public Task Entered => _entered.Task;

        public void Open() => _gate.TrySetResult();

        public async ValueTask Load(L2CacheEntry entry, bool useAsync, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            _entered.TrySetResult();
            if (useAsync)
            {
                await _gate.Task.WaitAsync(TimeSpan.FromSeconds(10));
            }
            else
            {
                Assert.True(_gate.Task.Wait(TimeSpan.FromSeconds(10)), "gate never opened");
            }
            if (Failure is not null)
            {
                throw Failure;
            }
            TableEntry.Write(entry.Table, 1, 0xfeed);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SingleFlight_ConcurrentMissesLoadOnce(bool useAsync)
    {
        const int waiters = 8;
        var cache = new L2TableCache(4);
        var loader = new GatedLoader();
        var start = new Barrier(waiters);
        var tasks = Enumerable.Range(0, waiters).Select(_ => OnOwnThread(async () =>
        {
            start.SignalAndWait();
            return await cache.GetAsync(0x60000, TableBytes, loader.Load, useAsync, CancellationToken.None);
        })).ToArray();

        await loader.Entered.WaitAsync(TimeSpan.FromSeconds(10));
        // Give every other request time to find the loading entry before the load finishes.
        await WaitUntil(() => cache.Hits + cache.Misses == waiters);
        Assert.Equal(1, cache.Misses);
        Assert.All(tasks, t => Assert.False(t.IsCompleted));
        loader.Open();

        var entries = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, loader.Calls);
        Assert.All(entries, e => Assert.Same(entries[0], e));
        Assert.Equal(0xfeedUL, entries[0][1]);
        Assert.Equal(waiters, entries[0].References);
        Assert.Equal(waiters - 1, cache.Hits);
        Assert.Equal(1, cache.Count);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task FailedLoad_FailsEveryWaiter_AndCachesNothing(bool useAsync)
    {
        const int waiters = 5;
        var cache = new L2TableCache(4);
        var loader = new GatedLoader { Failure = new IOException("disk on fire") };
        var start = new Barrier(waiters);
        var tasks = Enumerable.Range(0, waiters).Select(_ => OnOwnThread(async () =>
        {
            start.SignalAndWait();
            return await cache.GetAsync(0x60000, TableBytes, loader.Load, useAsync, CancellationToken.None);
        })).ToArray();

        await loader.Entered.WaitAsync(TimeSpan.FromSeconds(10));
        await WaitUntil(() => cache.Hits + cache.Misses == waiters);
        var loadingEntry = cache.Find(0x60000)!;
        cache.Release(loadingEntry);
        loader.Open();

        foreach (var task in tasks)
        {
            var e = await Assert.ThrowsAsync<IOException>(() => task.WaitAsync(TimeSpan.FromSeconds(10)));
            Assert.Equal("disk on fire", e.Message);
        }
        Assert.Equal(1, loader.Calls);
        Assert.Equal(0, cache.Count);
        Assert.Null(cache.Find(0x60000));
        Assert.Equal(0, loadingEntry.References);
        Assert.False(loadingEntry.InIndex);
        Assert.True(loadingEntry.Ready.IsFaulted);

        // The next lookup tries again.
        var retry = new CountingLoader();
        var entry = await Get(cache, 0x60000, retry, useAsync);
        Assert.Equal(1, retry.Total);
        Assert.NotSame(loadingEntry, entry);
        cache.Release(entry);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task FailedLoad_WithoutWaiters_LeavesNothing(bool useAsync)
    {
        var cache = new L2TableCache(4);
        ValueTask Fail(L2CacheEntry e, bool a, CancellationToken c) => ValueTask.FromException(new IOException("short read"));
        await Assert.ThrowsAsync<IOException>(async () => await cache.GetAsync(0x1000, TableBytes, Fail, useAsync, CancellationToken.None));
        Assert.Equal(0, cache.Count);
        Assert.Equal(1, cache.Misses);
    }

    [Fact]
    public async Task CancelledWaiter_DropsItsReference_OthersStillGetTheTable()
    {
        var cache = new L2TableCache(4);
        var loader = new GatedLoader();
        var first = Task.Run(async () => await cache.GetAsync(0x1000, TableBytes, loader.Load, true, CancellationToken.None));
        await loader.Entered.WaitAsync(TimeSpan.FromSeconds(10));
        using var cts = new CancellationTokenSource();
        var waiter = cache.GetAsync(0x1000, TableBytes, loader.Load, true, cts.Token).AsTask();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiter);
        loader.Open();
        var entry = await first.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, entry.References);
        Assert.Equal(1, loader.Calls);
        cache.Release(entry);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task CancelledLoader_DoesNotFailAWaiterThatWasNotCancelled(bool useAsync)
    {
        // The request that loads a table may be cancelled (its client went away); a request waiting for the same
        // table was not, so it must still get the table (by loading it itself) instead of an OperationCanceledException.
        var cache = new L2TableCache(4);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int calls = 0;
        async ValueTask Load(L2CacheEntry e, bool a, CancellationToken c)
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                await gate.Task.WaitAsync(c);
            }
            TableEntry.Write(e.Table, 0, 0xcafe);
        }

        using var cts = new CancellationTokenSource();
        var first = Task.Run(async () => await cache.GetAsync(0x1000, TableBytes, Load, true, cts.Token));
        await WaitUntil(() => Volatile.Read(ref calls) == 1);
        var second = OnOwnThread(async () => await cache.GetAsync(0x1000, TableBytes, Load, useAsync, CancellationToken.None));
        await WaitUntil(() => cache.Hits == 1);
        cts.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first.WaitAsync(TimeSpan.FromSeconds(10)));
        var entry = await second.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0xcafeUL, entry[0]);
        Assert.Equal(2, calls);
        Assert.Equal(1, entry.References);
        Assert.Equal(1, cache.Count);
        cache.Release(entry);
    }

    [Fact]
    public async Task Soak_ManyThreadsRandomOffsets_ReferencesBalance()
    {
        var cache = new L2TableCache(8);
        var loader = new CountingLoader();
        var start = new Barrier(8);
        var threads = Enumerable.Range(0, 8).Select(t => OnOwnThread(async () =>
        {
            var random = new Random(t);
            start.SignalAndWait();
            for (int i = 0; i < 2000; i++)
            {
                ulong offset = (ulong)random.Next(1, 20) * 0x1000;
                var e = await cache.GetAsync(offset, TableBytes, loader.Load, (i & 1) == 0, CancellationToken.None);
                Assert.Equal(offset, e.Offset);
                Assert.Equal(offset, e[0]);
                cache.Release(e);
            }
            return 0;
        })).ToArray();
        await Task.WhenAll(threads).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(16000, cache.Hits + cache.Misses);
        Assert.Equal(loader.Total, cache.Misses);
        Assert.True(cache.Count <= 8 + 8, $"count {cache.Count}");
        for (ulong o = 0x1000; o < 20 * 0x1000; o += 0x1000)
        {
            var e = cache.Find(o);
            if (e is not null)
            {
                Assert.Equal(1, e.References);
                cache.Release(e);
            }
        }
    }

    /// <summary>Runs <paramref name="body"/> on a dedicated thread, so that blocking (barriers, sync waits) cannot starve the thread pool.</summary>
    private static Task<T> OnOwnThread<T>(Func<Task<T>> body) =>
        Task.Factory.StartNew(body, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition never became true");
            await Task.Delay(1);
        }
    }
}
