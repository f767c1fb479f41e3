using System.Diagnostics;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Concurrency;

/// <summary>
/// Threads write overlapping, unaligned, multi-cluster ranges of one open image at once (allocating and in place, with
/// a backing file and without, a tiny L2 cache so that slices keep being evicted). Afterwards every byte must be
/// explained: see <see cref="OverlapVerifier"/> (whole segments of exactly one write, never a mix, never an earlier
/// write over a later one), qemu-img check must be clean, and QEMU must read the same disk as we do.
/// </summary>
/// <remarks>
/// The complement of <see cref="StressTests"/>, whose threads own disjoint sectors. Writes go to three kinds of place:
/// small fixed hot windows (many writes over each byte, mostly in place once allocated), an advancing front that all
/// threads reach at about the same time (racing allocations of fresh clusters), and anywhere (spreading over slices,
/// so the cache evicts).
/// </remarks>
public class OverlappingWriteTests
{
    private const int Threads = 6;
    private const int SliceBytes = 512;

    public static TheoryData<int, bool, int> Cases => new()
    {
        // cluster size, backing file, writes per thread
        { 4096, false, 1000 },
        { 4096, true, 1000 },
        { 65536, false, 300 },
        { 65536, true, 300 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Overlapping_concurrent_writes_leave_whole_sectors_of_one_write_in_a_valid_order(int clusterSize, bool withBacking, int writesPerThread)
    {
        string name = $"{nameof(OverlappingWriteTests)} cluster={clusterSize} backing={withBacking}";
        var master = new Random(TestSeed.For(name));
        var clock = Stopwatch.StartNew();
        // A slice maps 256 KiB (4 KiB clusters) or 4 MiB (64 KiB clusters): the disk spans many more slices than the
        // cache holds, even while every thread pins some.
        long size = clusterSize == 4096 ? 6L << 20 : 40L << 20;
        using var dir = new TempDirectory();
        string path = dir.File("o.qed");
        if (withBacking)
        {
            byte[] backing = new byte[size * 3 / 4 + 777];
            master.NextBytes(backing);
            File.WriteAllBytes(dir.File("b.raw"), backing);
        }
        // Table size 2 with 4 KiB clusters puts a table boundary at 4 MiB, inside the disk.
        QedImage.Create(path, new QedCreateOptions { Size = size, ClusterSize = clusterSize, TableSize = clusterSize == 4096 ? 2 : 4, BackingFile = withBacking ? "b.raw" : null, BackingFormat = withBacking ? "raw" : null });

        var hot = HotWindows(clusterSize, size);
        long frontStart = size / 2 + clusterSize / 3;
        int frontStep = clusterSize / 4;
        int maxLength = clusterSize * 5 / 2;
        byte[] earlier = new byte[size];
        byte[] disk = new byte[size];
        var records = new TimedWrite[Threads][];
        long logicalClock = 0;
        int performed = 0;
        L2CacheStatisticsSnapshot cache;
        long allocatedClusters;

        await using (var image = await QedImage.OpenAsync(path, new ImageOpenOptions { L2CacheSize = 2 * SliceBytes, L2SliceSize = SliceBytes }))
        {
            // Allocate half of each hot window first, so that writes there start both in place and allocating.
            foreach (var (start, length) in hot)
            {
                byte[] half = new byte[length / 2];
                master.NextBytes(half);
                await image.WriteAsync(half, start);
            }
            await image.ReadAsync(earlier, 0);
            long allocationEnd = image.AllocationEnd;

            int[] seeds = Enumerable.Range(0, Threads).Select(_ => master.Next()).ToArray();
            using var barrier = new Barrier(Threads);
            var workers = Enumerable.Range(0, Threads).Select(t => Task.Factory.StartNew(async () =>
            {
                var random = new Random(seeds[t]);
                bool useAsync = t % 2 == 0;
                var mine = records[t] = new TimedWrite[writesPerThread];
                byte[] buffer = new byte[maxLength];
                if (!barrier.SignalAndWait(TimeSpan.FromSeconds(30)))
                {
                    throw new TimeoutException($"worker {t}: not every worker reached the start");
                }
                for (int op = 0; op < writesPerThread; op++)
                {
                    int length = random.Next(1, maxLength + 1);
                    int roll = random.Next(100);
                    long offset;
                    if (roll < 45)
                    {
                        var (start, windowLength) = hot[random.Next(hot.Length)];
                        offset = start + random.NextInt64(Math.Max(1, windowLength - length));
                    }
                    else if (roll < 85)
                    {
                        offset = frontStart + (long)op * frontStep + random.Next(-2 * clusterSize, 2 * clusterSize);
                    }
                    else
                    {
                        offset = random.NextInt64(size - length);
                    }
                    offset = Math.Clamp(offset, 0, size - length);
                    int id = t * writesPerThread + op + 1;
                    var data = buffer.AsMemory(0, length);
                    WritePattern.Fill(id, offset, data.Span);
                    long issued = Interlocked.Increment(ref logicalClock);
                    if (useAsync)
                    {
                        await image.WriteAsync(data, offset);
                    }
                    else
                    {
                        image.Write(data, offset);
                    }
                    long completed = Interlocked.Increment(ref logicalClock);
                    mine[op] = new TimedWrite(id, offset, length, issued, completed);
                    Interlocked.Increment(ref performed);
                }
            }, TaskCreationOptions.LongRunning).Unwrap()).ToArray();

            try
            {
                await Task.WhenAll(workers);
            }
            catch
            {
                // Every worker's exception is reported below, not only the first.
            }
            var faults = workers.Where(w => w.IsFaulted).SelectMany(w => w.Exception!.InnerExceptions).ToList();
            Assert.True(faults.Count == 0, $"{faults.Count} workers failed:\n{string.Join("\n", faults)}");
            Assert.All(workers, w => Assert.True(w.IsCompletedSuccessfully));
            Assert.Equal(Threads * writesPerThread, performed);

            await image.ReadAsync(disk, 0);
            allocatedClusters = (image.AllocationEnd - allocationEnd) / clusterSize;
            var stats = image.CacheStatistics;
            cache = new L2CacheStatisticsSnapshot(stats.Evictions, stats.Misses);
        }

        var writes = records.SelectMany(r => r).ToList();
        Assert.Equal(Threads * writesPerThread, writes.Count);
        var verifier = new OverlapVerifier();
        verifier.Verify(disk, earlier, writes);
        Assert.True(verifier.ErrorCount == 0, $"{name}: {verifier.ErrorCount} bad segments:\n{string.Join("\n", verifier.Errors)}");
        Assert.True(allocatedClusters > 20, $"{name}: the threads allocated only {allocatedClusters} clusters (and tables)");
        Assert.True(cache.Evictions > 20, $"{name}: the tiny cache did not thrash ({cache.Evictions} evictions)");
        Assert.True(verifier.OrderedSegments > 100 && verifier.RacedSegments > 100, $"{name}: the writes hardly overlapped ({verifier.RacedSegments} raced, {verifier.OrderedSegments} ordered)");

        var check = Tools.QemuImgRaw(dir.Path, "check", "-f", "qed", path);
        Assert.True(check.ExitCode == 0, $"{name}: qemu-img check: {check}");
        string flat = dir.File("qemu.raw");
        Tools.QemuImg(dir.Path, "convert", "-f", "qed", "-O", "raw", path, flat);
        byte[] qemu = File.ReadAllBytes(flat);
        int differs = qemu.AsSpan().CommonPrefixLength(disk);
        Assert.True(qemu.Length == disk.Length && differs == disk.Length, $"{name}: QEMU reads the disk differently from offset 0x{differs:x}");

        TestSeed.Report($"{name}: {performed} overlapping writes by {Threads} threads; {verifier.Segments} segments checked " +
            $"({verifier.CoveredSegments} written, {verifier.ShortSegments} short, up to {verifier.MaxDepth} writes deep, {verifier.RacedSegments} raced over, {verifier.OrderedSegments} with a completed-before-issued pair); " +
            $"{allocatedClusters} clusters allocated while racing, {cache.Evictions} cache evictions, {cache.Misses} misses; {clock.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>Small windows where writes pile up: the start, across a slice boundary, across the table boundary when there is one, near the end.</summary>
    private static (long Start, int Length)[] HotWindows(int clusterSize, long size)
    {
        int length = 4 * clusterSize;
        long sliceSpan = (long)SliceBytes / sizeof(ulong) * clusterSize;
        long[] centres = clusterSize == 4096 ? [2 * clusterSize, sliceSpan, 4L << 20, size - 3 * clusterSize] : [2 * clusterSize, sliceSpan, 2 * sliceSpan + clusterSize / 2, size - 3 * clusterSize];
        return centres.Select(c => (Math.Clamp(c - length / 2, 0, size - length), length)).ToArray();
    }

    private readonly record struct L2CacheStatisticsSnapshot(long Evictions, long Misses);
}
