using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Concurrency;

/// <summary>
/// Several threads read, write (aligned and not, allocating and in place) and flush one open image at once; the
/// result must equal an in-memory model, pass qemu-img check and compare equal to the model's raw image.
/// </summary>
/// <remarks>
/// Each thread owns every T-th 512-byte sector, so threads never write the same byte but constantly allocate the
/// same clusters at the same time: the case where a lost copy-on-write or a stale table would destroy another
/// thread's data. A cache of two or three slices keeps eviction running under that concurrency.
/// </remarks>
public class StressTests
{
    /// <summary>Slices of 512 bytes (64 entries) when the cache is tiny, so that even a small disk spans many slices.</summary>
    private const int SmallSlice = 512;

    public static TheoryData<int, int, bool, long> Cases => new()
    {
        // cluster size, table size, backing file, L2 cache bytes
        { 4096, 2, false, 2 * SmallSlice },
        { 4096, 2, true, 3 * SmallSlice },
        { 65536, 4, false, 32L << 20 },
        { 65536, 4, true, 2 * SmallSlice },
        { 4096, 16, true, 32L << 20 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Concurrent_requests_match_a_model(int clusterSize, int tableSize, bool withBacking, long cacheBytes)
    {
        const int Threads = 6;
        const int OpsPerThread = 1500;
        // At least twelve 512-byte slices of L2 entries, so that a two- or three-slice cache cannot end up holding every
        // slice (it grows past its capacity while all its entries are in use and shrinks only at the next miss).
        long size = Math.Max(12L << 20, 12L * SmallSlice / sizeof(ulong) * clusterSize);
        using var dir = new TempDirectory();
        string path = dir.File("s.qed");
        byte[] model = new byte[size];
        if (withBacking)
        {
            byte[] backing = new byte[(int)(size / 2) + 777];
            new Random(clusterSize + tableSize).NextBytes(backing);
            File.WriteAllBytes(dir.File("b.raw"), backing);
            backing.CopyTo(model, 0);
        }
        QedImage.Create(path, new QedCreateOptions { Size = size, ClusterSize = clusterSize, TableSize = tableSize, BackingFile = withBacking ? "b.raw" : null, BackingFormat = withBacking ? "raw" : null });

        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await using (var image = await QedImage.OpenAsync(path, new ImageOpenOptions { L2CacheSize = cacheBytes, L2SliceSize = cacheBytes <= 3 * SmallSlice ? SmallSlice : 4096 }))
        {
            using var start = new ManualResetEventSlim(false);
            var workers = Enumerable.Range(0, Threads).Select(t => Task.Factory.StartNew(async () =>
            {
                start.Wait();
                var random = new Random(t * 7919 + clusterSize);
                bool useAsync = t % 2 == 0;
                long sectors = size / 512;
                for (int op = 0; op < OpsPerThread; op++)
                {
                    int roll = random.Next(100);
                    if (roll < 3)
                    {
                        if (useAsync)
                        {
                            await image.FlushAsync();
                        }
                        else
                        {
                            image.Flush();
                        }
                        continue;
                    }
                    // An owned sector, biased to a small area so that threads meet in the same clusters.
                    long sector = (random.Next(4) == 0 ? random.NextInt64(sectors / Threads) : random.NextInt64(sectors / Threads / 16)) * Threads + t;
                    int inSector = random.Next(512);
                    int length = random.Next(1, 513 - inSector);
                    long offset = sector * 512 + inSector;
                    byte[] buffer = new byte[length];
                    if (roll < 60)
                    {
                        random.NextBytes(buffer);
                        if (useAsync)
                        {
                            await image.WriteAsync(buffer, offset);
                        }
                        else
                        {
                            image.Write(buffer, offset);
                        }
                        // Only this thread writes these bytes, so the model needs no lock.
                        buffer.CopyTo(model, offset);
                    }
                    else
                    {
                        if (useAsync)
                        {
                            await image.ReadAsync(buffer, offset);
                        }
                        else
                        {
                            image.Read(buffer, offset);
                        }
                        if (!buffer.AsSpan().SequenceEqual(model.AsSpan((int)offset, length)))
                        {
                            errors.Enqueue($"thread {t} op {op}: read of its own {length} bytes at {offset} differs from what it wrote");
                        }
                    }
                }
            }, TaskCreationOptions.LongRunning).Unwrap()).ToArray();
            start.Set();
            await Task.WhenAll(workers);
            Assert.True(errors.IsEmpty, string.Join("\n", errors.Take(5)));

            byte[] all = new byte[size];
            await image.ReadAsync(all, 0);
            Assert.True(all.AsSpan().SequenceEqual(model), "the whole disk differs from the model after the run");
            if (cacheBytes <= 3 * SmallSlice)
            {
                Assert.True(image.CacheStatistics.Evictions > 20, $"the tiny cache did not thrash: {image.CacheStatistics}");
            }
        }

        var check = Tools.QemuImgRaw(dir.Path, "check", "-f", "qed", path);
        Assert.True(check.ExitCode == 0, $"qemu-img check: {check}");
        File.WriteAllBytes(dir.File("model.raw"), model);
        var compare = Tools.QemuImgRaw(dir.Path, "compare", "-f", "qed", "-F", "raw", path, dir.File("model.raw"));
        Assert.True(compare.ExitCode == 0, $"qemu-img compare: {compare}");
    }
}
