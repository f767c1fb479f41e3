using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>
/// Several threads on one image: all released at once, each working on its own bytes, then the whole disk is checked
/// against the merged model. Interleaved ownership puts different threads' bytes in the same clusters, so allocations
/// of one cluster race (the iotest 038 situation).
/// </summary>
public class ConcurrencyTests
{
    private const int Threads = 4;
    private const int OpsPerThread = 200;

    private static Task RunOnThreads(int count, Func<int, Task> body)
    {
        var start = new Barrier(count);
        return Task.WhenAll(Enumerable.Range(0, count).Select(t => Task.Factory.StartNew(async () =>
        {
            start.SignalAndWait();
            await body(t);
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap()));
    }

    public static TheoryData<int, int, bool, bool> Cases()
    {
        var data = new TheoryData<int, int, bool, bool>();
        foreach (var (cs, ts) in new[] { (4096, 1), (65536, 4) })
        {
            foreach (bool backing in new[] { false, true })
            {
                data.Add(cs, ts, backing, false);
                data.Add(cs, ts, backing, true);
            }
        }
        return data;
    }

    private static byte[] PrepareBacking(TempDirectory dir, long length, int seed)
    {
        byte[] content = new byte[length];
        new Random(seed).NextBytes(content);
        File.WriteAllBytes(dir.File("base.raw"), content);
        return content;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public Task InterleavedOwners_SharingClusters(int cs, int ts, bool withBacking, bool useAsync) =>
        InterleavedOwners(cs, ts, withBacking, useAsync, new ImageOpenOptions());

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public Task InterleavedOwners_WithSmallSlicesAndATinyCache(bool useAsync) =>
        InterleavedOwners(4096, 2, withBacking: true, useAsync, new ImageOpenOptions { L2SliceSize = 512, L2CacheSize = 2048 });

    private static async Task InterleavedOwners(int cs, int ts, bool withBacking, bool useAsync, ImageOpenOptions options)
    {
        const int Unit = 2048; // thread t owns the units with (offset / Unit) % Threads == t
        long size = 8L * Img.MiB + 512 * 3;
        using var dir = new TempDirectory();
        string path = dir.File("shared.qed");
        byte[] model = new byte[size];
        if (withBacking)
        {
            byte[] base_ = PrepareBacking(dir, 6 * Img.MiB + 777, cs);
            base_.CopyTo(model, 0);
            Img.Create(path, size, cs, ts, backing: "base.raw", backingFormat: "raw");
        }
        else
        {
            Img.Create(path, size, cs, ts);
        }
        long units = size / Unit;

        await using (var image = await Img.Open(path, useAsync, options: options))
        {
            await RunOnThreads(Threads, async t =>
            {
                var random = new Random(t * 7919 + cs);
                for (int op = 0; op < OpsPerThread; op++)
                {
                    long unit = random.NextInt64(units / Threads) * Threads + t;
                    long start = unit * Unit;
                    int from = random.Next(Unit);
                    int length = random.Next(1, Unit - from + 1);
                    long offset = start + from;
                    switch (random.Next(10))
                    {
                        case < 6:
                            byte[] data = Img.RandomBytes(random, length);
                            await Img.Write(image, offset, data, useAsync);
                            data.CopyTo(model, offset);
                            break;
                        case < 7:
                            await Img.WriteZeroes(image, offset, length, useAsync);
                            Array.Clear(model, (int)offset, length);
                            break;
                        case < 9:
                            byte[] read = await Img.Read(image, offset, length, useAsync);
                            Assert.True(model.AsSpan((int)offset, length).SequenceEqual(read), $"thread {t} op {op}: own bytes at {offset} changed");
                            break;
                        default:
                            var status = await Img.Status(image, offset, length, useAsync);
                            Assert.InRange(status.Length, 1, length);
                            break;
                    }
                }
            }).WaitAsync(TimeSpan.FromSeconds(60));

            byte[] all = await Img.Read(image, 0, (int)size, useAsync);
            AssertEqualDisk(model, all, "before close");
        }

        await using (var image = await Img.Open(path, useAsync, readOnly: true))
        {
            AssertEqualDisk(model, await Img.Read(image, 0, (int)size, useAsync), "after reopen");
            await AssertEveryClusterOnce(image, size, useAsync);
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task DisjointRegions_WithLargeWritesAndZeroClusters(int cs, int ts, bool withBacking, bool useAsync)
    {
        long region = 2L * Img.MiB + cs; // regions start at different cluster phases of the L2 tables
        long size = region * Threads;
        using var dir = new TempDirectory();
        string path = dir.File("regions.qed");
        byte[] model = new byte[size];
        if (withBacking)
        {
            byte[] base_ = PrepareBacking(dir, size - 3 * region / 2 + 5, cs + 1);
            base_.CopyTo(model, 0);
            Img.Create(path, size, cs, ts, backing: "base.raw", backingFormat: "raw");
        }
        else
        {
            Img.Create(path, size, cs, ts);
        }

        await using (var image = await Img.Open(path, useAsync))
        {
            await RunOnThreads(Threads, async t =>
            {
                var random = new Random(t * 104729 + cs + (withBacking ? 1 : 0));
                long lo = t * region;
                for (int op = 0; op < OpsPerThread; op++)
                {
                    long offset = lo + random.NextInt64(region);
                    if (random.Next(3) == 0)
                    {
                        offset = Math.Max(lo, offset & ~((long)cs - 1));
                    }
                    long length = random.Next(3) switch
                    {
                        0 => random.Next(1, 5000),
                        1 => (long)random.Next(1, 4) * cs,
                        _ => random.Next(1, 3 * cs),
                    };
                    length = Math.Min(length, lo + region - offset);
                    if (length <= 0)
                    {
                        continue;
                    }
                    switch (random.Next(10))
                    {
                        case < 5:
                            byte[] data = Img.RandomBytes(random, (int)length);
                            await Img.Write(image, offset, data, useAsync);
                            data.CopyTo(model, offset);
                            break;
                        case < 7:
                            await Img.WriteZeroes(image, offset, length, useAsync);
                            Array.Clear(model, (int)offset, (int)length);
                            break;
                        default:
                            byte[] read = await Img.Read(image, offset, (int)length, useAsync);
                            Assert.True(model.AsSpan((int)offset, (int)length).SequenceEqual(read), $"thread {t} op {op}: region bytes at {offset} wrong");
                            break;
                    }
                }
            }).WaitAsync(TimeSpan.FromSeconds(60));
            AssertEqualDisk(model, await Img.Read(image, 0, (int)size, useAsync), "before close");
        }

        await using (var image = await Img.Open(path, useAsync, readOnly: true))
        {
            AssertEqualDisk(model, await Img.Read(image, 0, (int)size, useAsync), "after reopen");
            await AssertEveryClusterOnce(image, size, useAsync);
        }
        Assert.False(Img.FileHeader(path).NeedsCheck);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ConcurrentFirstWrites_ToOneCluster_AllocateItOnce(bool useAsync)
    {
        // iotest 038 / §13.7: several writers hit one empty cluster at once; exactly one allocation may win and the
        // others must become in-place writes into it.
        for (int round = 0; round < 20; round++)
        {
            using var dir = new TempDirectory();
            string path = dir.File("one.qed");
            Img.Create(path, Img.MiB);
            await using (var image = await Img.Open(path, useAsync))
            {
                await RunOnThreads(Threads, t => Img.Write(image, t * 4096, 4096, (byte)(0x10 + t), useAsync)).WaitAsync(TimeSpan.FromSeconds(30));
                Assert.Equal(0xa0000, image.AllocationEnd);
                byte[] cluster = await Img.Read(image, 0, Threads * 4096, useAsync);
                for (int t = 0; t < Threads; t++)
                {
                    Img.AllBytes((byte)(0x10 + t), cluster.AsSpan(t * 4096, 4096), $"round {round} thread {t}");
                }
            }
            Assert.Equal(0xa0000, Img.FileLength(path));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ReadersDuringAllocations_SeeOldOrNewDataNeverGarbage(bool useAsync)
    {
        // Readers spin over a region while a writer fills it cluster by cluster: each 512-byte sector read must be
        // either the backing pattern or the written pattern, never anything else (no torn table entries).
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("base.raw"), Img.Fill(4 * Img.MiB, 0xb0));
        string path = dir.File("rw.qed");
        Img.Create(path, 4 * Img.MiB, 4096, 1, backing: "base.raw", backingFormat: "raw");
        await using var image = await Img.Open(path, useAsync);
        using var done = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            try
            {
                for (long offset = 0; offset < 4 * Img.MiB; offset += 8192)
                {
                    await Img.Write(image, offset + 512, 4096, 0xc1, useAsync);
                }
            }
            finally
            {
                done.Cancel();
            }
        });
        var readers = Enumerable.Range(0, 2).Select(r => Task.Run(async () =>
        {
            var random = new Random(r);
            while (!done.IsCancellationRequested)
            {
                long offset = random.Next(0, 4 * Img.MiB / 512 - 64) * 512L;
                byte[] data = await Img.Read(image, offset, 64 * 512, useAsync);
                for (int s = 0; s < 64; s++)
                {
                    byte first = data[s * 512];
                    Assert.True(first is 0xb0 or 0xc1, $"sector at {offset + s * 512} starts with 0x{first:x2}");
                    Img.AllBytes(first, data.AsSpan(s * 512, 512), $"sector at {offset + s * 512}");
                }
            }
        })).ToArray();
        await Task.WhenAll(readers.Append(writer)).WaitAsync(TimeSpan.FromSeconds(60));
    }

    private static void AssertEqualDisk(byte[] expected, byte[] actual, string context)
    {
        int diff = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(diff == expected.Length, $"{context}: first difference at guest offset {diff}: expected 0x{(diff < expected.Length ? expected[diff] : 0):x2}, read 0x{(diff < actual.Length ? actual[diff] : 0):x2}");
    }

    /// <summary>No two guest clusters share a host cluster, and every data cluster lies inside the file.</summary>
    private static async Task AssertEveryClusterOnce(QedImage image, long size, bool useAsync)
    {
        var hosts = new HashSet<long>();
        int cs = image.Geometry.ClusterSize;
        for (long offset = 0; offset < size;)
        {
            var status = await Img.Status(image, offset, size - offset, useAsync);
            if (status.State == BlockState.Data)
            {
                for (long c = 0; c < status.Length; c += cs)
                {
                    long host = (status.HostOffset + c) & ~((long)cs - 1);
                    Assert.True(hosts.Add(host), $"host cluster 0x{host:x} is used twice");
                    Assert.True(host + cs <= image.AllocationEnd);
                }
            }
            offset += status.Length;
        }
    }
}
