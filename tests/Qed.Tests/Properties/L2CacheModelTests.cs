using CsCheck;
using Qed.Tables;

namespace Qed.Tests.Properties;

/// <summary>
/// Property tests of the L2 cache against a plain model: a list in recency order with reference counts.
/// Random sequences of lookups and releases must give the same hits, misses and contents as the model, and no
/// entry in use may ever leave the cache.
/// </summary>
public class L2CacheModelTests
{
    private static readonly Func<L2CacheEntry, bool, CancellationToken, ValueTask> s_load = (_, _, _) => ValueTask.CompletedTask;

    /// <summary>An operation: look up one of a few offsets (op ≥ 0), or release the held entry number -op-1.</summary>
    private static readonly Gen<(int Capacity, int[] Ops)> s_scenarios =
        Gen.Select(Gen.Int[1, 5], Gen.Int[-6, 9].Array[1, 120]);

    [Fact]
    public void Cache_matches_an_lru_model_with_pinning()
    {
        s_scenarios.Sample(scenario =>
        {
            var (capacity, ops) = scenario;
            var cache = new L2TableCache(capacity);
            var model = new List<(ulong Offset, int Refs)>(); // least recently used first
            var held = new List<L2CacheEntry>();
            long hits = 0, misses = 0;
            foreach (int op in ops)
            {
                if (op < 0)
                {
                    int index = -op - 1;
                    if (index >= held.Count)
                    {
                        continue;
                    }
                    var entry = held[index];
                    held.RemoveAt(index);
                    cache.Release(entry);
                    int at = model.FindIndex(m => m.Offset == entry.Offset);
                    if (at >= 0)
                    {
                        model[at] = (model[at].Offset, model[at].Refs - 1);
                    }
                    continue;
                }

                ulong offset = (ulong)op * 4096;
                var got = cache.GetAsync(offset, 64, s_load, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();
                held.Add(got);
                int found = model.FindIndex(m => m.Offset == offset);
                if (found >= 0)
                {
                    hits++;
                    var item = model[found];
                    model.RemoveAt(found);
                    model.Add((offset, item.Refs + 1));
                }
                else
                {
                    misses++;
                    model.Add((offset, 1));
                    for (int i = 0; i < model.Count && model.Count > capacity;)
                    {
                        if (model[i].Refs == 0)
                        {
                            model.RemoveAt(i);
                        }
                        else
                        {
                            i++;
                        }
                    }
                }

                if (cache.Count != model.Count || cache.Hits != hits || cache.Misses != misses)
                {
                    throw new InvalidOperationException($"cache count {cache.Count}, hits {cache.Hits}, misses {cache.Misses}; model {model.Count}, {hits}, {misses}");
                }
                foreach (var entry in held)
                {
                    var again = cache.Find(entry.Offset) ?? throw new InvalidOperationException($"entry 0x{entry.Offset:x} in use was evicted");
                    if (!ReferenceEquals(again, entry))
                    {
                        throw new InvalidOperationException($"two entries for 0x{entry.Offset:x}");
                    }
                    cache.Release(again);
                }
                // Find refreshes recency like a hit does; replay that in the model.
                foreach (var entry in held)
                {
                    int at = model.FindIndex(m => m.Offset == entry.Offset);
                    var item = model[at];
                    model.RemoveAt(at);
                    model.Add(item);
                }
            }
        });
    }
}
