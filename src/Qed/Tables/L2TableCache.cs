using System.Diagnostics;

namespace Qed.Tables;

/// <summary>
/// The L2 table cache: pieces of L2 tables ("slices", 4 KiB by default, or whole tables) looked up by file
/// offset, counted by reference, evicted least recently used. The cache does not care how large an entry is;
/// the image decides the slice size and the capacity in entries (bytes / slice size).
/// </summary>
/// <remarks>
/// Algorithm:
/// <list type="number">
/// <item>A dictionary maps a slice's file offset to its entry (O(1) lookup); a linked list orders the
/// entries from least to most recently used. A hit moves the entry to the most-recent end.</item>
/// <item>Every request that uses a table holds a reference from <see cref="GetAsync"/> or
/// <see cref="Find"/> until <see cref="Release"/>. An entry with references is never evicted, so an
/// allocating write that changes a cached table can never race with a stale copy of it being read back.</item>
/// <item>Eviction happens only when an entry is inserted: from the least recently used end, entries
/// without references are removed until the count is back at the capacity. When every entry is in use
/// the cache grows past its capacity and shrinks back at later insertions.</item>
/// <item>Inserting a table whose offset is already cached keeps the cached entry and returns it; the
/// newcomer is dropped.</item>
/// <item>Single flight: the first request that misses inserts an entry in the loading state and reads
/// the table; requests that find a loading entry wait for it, so concurrent misses read a table once. A
/// failed load removes the entry and fails every waiter.</item>
/// </list>
/// All bookkeeping happens under one lock that is never held across I/O or an await.
/// </remarks>
internal sealed class L2TableCache
{
    private readonly object _sync = new();
    private readonly Dictionary<ulong, L2CacheEntry> _index = new();
    private readonly LinkedList<L2CacheEntry> _recency = new();
    private long _hits;
    private long _misses;
    private long _evictions;

    /// <summary>Creates a cache that holds <paramref name="capacity"/> unused tables at most.</summary>
    public L2TableCache(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
    }

    /// <summary>Number of tables kept when none is in use.</summary>
    public int Capacity { get; }

    /// <summary>Tables currently cached (loading ones included).</summary>
    public int Count
    {
        get
        {
            lock (_sync)
            {
                return _index.Count;
            }
        }
    }

    /// <summary>Lookups that found their table cached.</summary>
    public long Hits => Interlocked.Read(ref _hits);

    /// <summary>Lookups that had to read their table.</summary>
    public long Misses => Interlocked.Read(ref _misses);

    /// <summary>Tables removed to make room.</summary>
    public long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>Returns the cached entry for <paramref name="offset"/> with a reference taken, or null on a miss. The entry may still be loading: await <see cref="L2CacheEntry.Ready"/>.</summary>
    public L2CacheEntry? Find(ulong offset)
    {
        lock (_sync)
        {
            if (!_index.TryGetValue(offset, out var entry))
            {
                return null;
            }
            TouchUnsynchronized(entry);
            entry.References++;
            return entry;
        }
    }

    /// <summary>
    /// Publishes <paramref name="entry"/>, on which the caller holds one reference, and returns the entry the caller now holds:
    /// the cached one if that offset is already cached (the newcomer is dropped), else <paramref name="entry"/> itself.
    /// </summary>
    public L2CacheEntry Insert(L2CacheEntry entry)
    {
        Debug.Assert(!entry.InIndex, "An entry is inserted once.");
        lock (_sync)
        {
            if (_index.TryGetValue(entry.Offset, out var cached))
            {
                entry.References--;
                TouchUnsynchronized(cached);
                cached.References++;
                return cached;
            }
            if (entry.References == 0)
            {
                entry.References = 1;
            }
            AddUnsynchronized(entry);
            return entry;
        }
    }

    /// <summary>Drops one reference; the entry becomes evictable when none is left.</summary>
    public void Release(L2CacheEntry entry)
    {
        lock (_sync)
        {
            Debug.Assert(entry.References > 0, "Released more often than acquired.");
            entry.References--;
        }
    }

    /// <summary>
    /// Returns the table at <paramref name="offset"/> with a reference taken, loading it with <paramref name="load"/> on a miss.
    /// Concurrent misses on one offset run <paramref name="load"/> once.
    /// </summary>
    public async ValueTask<L2CacheEntry> GetAsync(ulong offset, int tableBytes, Func<L2CacheEntry, bool, CancellationToken, ValueTask> load, bool useAsync, CancellationToken cancellationToken)
    {
        L2CacheEntry entry;
        bool loader = false;
        lock (_sync)
        {
            if (_index.TryGetValue(offset, out var cached))
            {
                _hits++;
                TouchUnsynchronized(cached);
                cached.References++;
                entry = cached;
            }
            else
            {
                _misses++;
                entry = new L2CacheEntry(offset, new byte[tableBytes]) { References = 1 };
                AddUnsynchronized(entry);
                loader = true;
            }
        }

        if (loader)
        {
            try
            {
                await load(entry, useAsync, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                lock (_sync)
                {
                    RemoveUnsynchronized(entry);
                    entry.References--;
                }
                entry.MarkFailed(e);
                throw;
            }
            entry.MarkReady();
            return entry;
        }

        try
        {
            if (useAsync)
            {
                await entry.Ready.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            else
            {
                entry.Ready.GetAwaiter().GetResult();
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && entry.Ready.IsFaulted)
        {
            // The request that was loading the table was cancelled, not this one: load it again.
            Release(entry);
            return await GetAsync(offset, tableBytes, load, useAsync, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Release(entry);
            throw;
        }
        return entry;
    }

    /// <summary>
    /// Drops the cached slices at file offsets <paramref name="start"/> to <paramref name="end"/> − 1: a table no entry
    /// points at any more, whose clusters may be reused (a later table at the same offset must not meet its slices). A
    /// slice still in use stays with its holder, outside the cache.
    /// </summary>
    public void Forget(ulong start, ulong end)
    {
        lock (_sync)
        {
            foreach (var entry in _index.Values.Where(e => e.Offset >= start && e.Offset < end).ToList())
            {
                RemoveUnsynchronized(entry);
            }
        }
    }

    /// <summary>Drops every cached table (after a repair rewrote tables on disk). No entry may be in use.</summary>
    public void Clear()
    {
        lock (_sync)
        {
            Debug.Assert(_index.Values.All(e => e.References == 0), "Clear runs only while no request uses a table.");
            foreach (var entry in _index.Values)
            {
                entry.InIndex = false;
                entry.RecencyNode = null;
            }
            _index.Clear();
            _recency.Clear();
        }
    }

    private void AddUnsynchronized(L2CacheEntry entry)
    {
        _index.Add(entry.Offset, entry);
        entry.InIndex = true;
        entry.RecencyNode = _recency.AddLast(entry);
        EvictUnsynchronized();
    }

    private void TouchUnsynchronized(L2CacheEntry entry)
    {
        var node = entry.RecencyNode!;
        if (node.Next is not null)
        {
            _recency.Remove(node);
            _recency.AddLast(node);
        }
    }

    private void RemoveUnsynchronized(L2CacheEntry entry)
    {
        if (entry.InIndex)
        {
            _index.Remove(entry.Offset);
            _recency.Remove(entry.RecencyNode!);
            entry.RecencyNode = null;
            entry.InIndex = false;
        }
    }

    private void EvictUnsynchronized()
    {
        var node = _recency.First;
        while (_index.Count > Capacity && node is not null)
        {
            var next = node.Next;
            if (node.Value.References == 0)
            {
                RemoveUnsynchronized(node.Value);
                _evictions++;
            }
            node = next;
        }
    }
}
