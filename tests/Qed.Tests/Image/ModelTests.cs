using Qed.Format;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>
/// Model-based tests: random writes (aligned and not, spanning clusters, L2 slices and L2 tables), write-zeroes and
/// reads against a byte-array model of the disk, with and without backing files, across reopens.
/// </summary>
public class ModelTests
{
    /// <summary>The guest ranges a run works in (a sparse model of a large disk): each window is modelled byte by byte.</summary>
    private sealed class Model
    {
        private readonly List<(long Start, byte[] Bytes)> _windows = [];

        public IReadOnlyList<(long Start, byte[] Bytes)> Windows => _windows;

        public void AddWindow(long start, long end) => _windows.Add((start, new byte[end - start]));

        private (long Start, byte[] Bytes) WindowOf(long offset, long length)
        {
            foreach (var w in _windows)
            {
                if (offset >= w.Start && offset + length <= w.Start + w.Bytes.Length)
                {
                    return w;
                }
            }
            throw new InvalidOperationException($"[{offset}, +{length}) is outside the model");
        }

        public void Write(long offset, ReadOnlySpan<byte> data)
        {
            var w = WindowOf(offset, data.Length);
            data.CopyTo(w.Bytes.AsSpan((int)(offset - w.Start)));
        }

        public void Zero(long offset, long length)
        {
            var w = WindowOf(offset, length);
            w.Bytes.AsSpan((int)(offset - w.Start), (int)length).Clear();
        }

        public ReadOnlySpan<byte> Expected(long offset, int length)
        {
            var w = WindowOf(offset, length);
            return w.Bytes.AsSpan((int)(offset - w.Start), length);
        }
    }

    private static void AssertSame(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, long offset, string context)
    {
        int diff = expected.CommonPrefixLength(actual);
        if (diff < expected.Length || expected.Length != actual.Length)
        {
            Assert.Fail($"{context}: first difference at guest offset {offset + diff} (0x{offset + diff:x}): expected 0x{expected[diff]:x2}, read 0x{actual[diff]:x2}");
        }
    }

    /// <summary>Runs random operations against <paramref name="image"/> and the model; returns the image (reopened, maybe).</summary>
    private static async Task<QedImage> RunOps(Func<Task<QedImage>> reopen, QedImage image, Model model, Random random, int operations, bool useAsync, string context)
    {
        int cs = image.Geometry.ClusterSize;
        for (int op = 0; op < operations; op++)
        {
            var (wStart, wBytes) = model.Windows[random.Next(model.Windows.Count)];
            long wEnd = wStart + wBytes.Length;
            long offset = wStart + random.NextInt64(wBytes.Length);
            long length = random.Next(4) switch
            {
                0 => random.Next(1, 4096),
                1 => random.Next(1, 3 * cs + 1000),
                2 => (long)random.Next(1, 4) * cs,
                _ => random.Next(1, Math.Min(cs, 8192)) * 512L,
            };
            if (random.Next(3) == 0)
            {
                // Cluster aligned start: exercises whole-cluster allocation and zero clusters.
                long aligned = offset & ~((long)cs - 1);
                offset = aligned >= wStart ? aligned : offset;
            }
            length = Math.Max(1, Math.Min(length, wEnd - offset));
            string what = $"{context} op {op}";

            int kind = random.Next(100);
            if (kind < 45)
            {
                byte[] data = Img.RandomBytes(random, (int)length);
                await Img.Write(image, offset, data, useAsync);
                model.Write(offset, data);
            }
            else if (kind < 65)
            {
                await Img.WriteZeroes(image, offset, length, useAsync);
                model.Zero(offset, length);
            }
            else if (kind < 92)
            {
                byte[] read = await Img.Read(image, offset, (int)length, useAsync);
                AssertSame(model.Expected(offset, (int)length), read, offset, $"{what} read [{offset}, +{length})");
            }
            else if (kind < 97)
            {
                var status = await Img.Status(image, offset, length, useAsync);
                Assert.Equal(offset, status.Offset);
                Assert.InRange(status.Length, 1, length);
                if (status.State == BlockState.Zero)
                {
                    Img.AllBytes(0, model.Expected(offset, (int)status.Length), $"{what} zero extent");
                }
                if (status.State == BlockState.Data)
                {
                    Assert.Equal(status.HostOffset & (cs - 1), offset & (cs - 1));
                }
            }
            else
            {
                await Img.Close(image, useAsync);
                Assert.False(Img.FileHeader(image.FileName).NeedsCheck, $"{what}: need-check left set after close");
                image = await reopen();
            }
        }
        return image;
    }

    private static async Task VerifyAll(BlockDevice image, Model model, bool useAsync, string context)
    {
        foreach (var (start, bytes) in model.Windows)
        {
            for (int done = 0; done < bytes.Length;)
            {
                int n = Math.Min(bytes.Length - done, 4 * Img.MiB);
                byte[] read = await Img.Read(image, start + done, n, useAsync);
                AssertSame(bytes.AsSpan(done, n), read, start + done, $"{context} verify");
                done += n;
            }
        }
    }

    public static TheoryData<int, int, bool, bool> Cases()
    {
        var data = new TheoryData<int, int, bool, bool>();
        foreach (var (cs, ts) in new[] { (4096, 1), (4096, 2), (65536, 4), (1 << 20, 16) })
        {
            foreach (bool backing in new[] { false, true })
            {
                data.Add(cs, ts, backing, false);
                data.Add(cs, ts, backing, true);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task RandomOperations_MatchTheModel(int cs, int ts, bool withBacking, bool useAsync)
    {
        // A fixed seed per case (HashCode.Combine is randomised per process), so a failure replays.
        int seed = cs / 4096 * 1000 + ts * 10 + (withBacking ? 2 : 0) + (useAsync ? 1 : 0);
        var random = new Random(seed);
        string context = $"cs={cs} ts={ts} backing={withBacking} async={useAsync} seed={seed}";
        var geometry = new QedGeometry(cs, ts);
        long sliceSpan = Math.Min(geometry.L2Span, (long)(ImageOpenOptions.DefaultL2SliceSize / 8) * cs);
        long span = geometry.L2Span;
        long window = Math.Max(8L * cs, Img.MiB);
        long size = span + 3L * cs + 1536; // the last cluster is partial

        var model = new Model();
        model.AddWindow(0, Math.Min(window, sliceSpan));
        if (sliceSpan < span)
        {
            model.AddWindow(sliceSpan - window / 2, sliceSpan + window / 2); // crosses an L2 slice boundary
        }
        model.AddWindow(span - window / 2, size); // crosses the L2 table boundary up to the end

        using var dir = new TempDirectory();
        string path = dir.File("model.qed");
        if (withBacking)
        {
            // A raw backing file shorter than the image and not sector aligned, with random data in the windows.
            string basePath = dir.File("base.raw");
            long baseLength = span + cs + 1000;
            using (var stream = new FileStream(basePath, FileMode.Create))
            {
                stream.SetLength(baseLength);
                foreach (var (start, bytes) in model.Windows)
                {
                    int n = (int)Math.Clamp(baseLength - start, 0, bytes.Length);
                    random.NextBytes(bytes.AsSpan(0, n));
                    stream.Seek(start, SeekOrigin.Begin);
                    stream.Write(bytes, 0, n);
                }
            }
            Img.Create(path, size, cs, ts, backing: "base.raw", backingFormat: "raw");
        }
        else
        {
            Img.Create(path, size, cs, ts);
        }

        int operations = cs >= Img.MiB ? 80 : 300;
        Task<QedImage> Reopen() => Img.Open(path, useAsync);
        var image = await Reopen();
        try
        {
            image = await RunOps(Reopen, image, model, random, operations, useAsync, context);
            await VerifyAll(image, model, useAsync, context);
        }
        finally
        {
            await Img.Close(image, useAsync);
        }

        Assert.False(Img.FileHeader(path).NeedsCheck);
        long fileLength = Img.FileLength(path);
        Assert.Equal(0, fileLength % cs);
        await using (var reopened = await Img.Open(path, useAsync, readOnly: true))
        {
            Assert.Equal(fileLength, reopened.AllocationEnd);
            await VerifyAll(reopened, model, useAsync, context + " after reopen");
            // Outside the windows nothing was written, and the backing file holds zeros there.
            foreach (long probe in new[] { window + 3L * cs, span / 2 + 17, sliceSpan + window })
            {
                if (probe + 4096 < span - window / 2 && model.Windows.All(w => probe + 4096 <= w.Start || probe >= w.Start + w.Bytes.Length))
                {
                    Img.AllBytes(0, await Img.Read(reopened, probe, 4096, useAsync), $"{context} outside at {probe}");
                }
            }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ThreeLevelMixedGeometryChain_MatchesTheModel(bool useAsync)
    {
        // base 64K/ts4 <- mid 4K/ts2 <- top 16K/ts2, all 6 MiB + 1536: random operations on each level in turn.
        var random = new Random(useAsync ? 303 : 808);
        long size = 6L * Img.MiB + 1536;
        var model = new Model();
        model.AddWindow(0, size);
        using var dir = new TempDirectory();
        Img.Create(dir.File("base.qed"), size);
        Img.Create(dir.File("mid.qed"), size, 4096, 2, backing: "base.qed", backingFormat: "qed");
        Img.Create(dir.File("top.qed"), size, 16384, 2, backing: "mid.qed", backingFormat: "qed");

        foreach (string level in new[] { "base.qed", "mid.qed", "top.qed" })
        {
            string path = dir.File(level);
            Task<QedImage> Reopen() => Img.Open(path, useAsync);
            var image = await Reopen();
            try
            {
                image = await RunOps(Reopen, image, model, random, 120, useAsync, level);
                await VerifyAll(image, model, useAsync, level);
            }
            finally
            {
                await Img.Close(image, useAsync);
            }
        }

        await using var top = await Img.Open(dir.File("top.qed"), useAsync, readOnly: true);
        await VerifyAll(top, model, useAsync, "top after reopen");
        var mid = Assert.IsType<QedImage>(top.Backing);
        Assert.Equal(new QedGeometry(4096, 2), mid.Geometry);
        Assert.Equal(QedGeometry.Default, Assert.IsType<QedImage>(mid.Backing).Geometry);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task LargeRunsAcrossManySlices_MatchTheModel(bool withBacking, bool useAsync)
    {
        // 512-byte slices map 64 clusters each: writes and zero-writes of up to 1 MiB cross many slices, with zero,
        // unallocated and allocated clusters interleaved inside one run.
        var random = new Random(withBacking ? 6401 : 6400);
        long size = 10L * Img.MiB + 1536;
        var model = new Model();
        model.AddWindow(0, size);
        using var dir = new TempDirectory();
        string path = dir.File("slices.qed");
        if (withBacking)
        {
            byte[] base_ = new byte[7 * Img.MiB + 333];
            random.NextBytes(base_);
            File.WriteAllBytes(dir.File("base.raw"), base_);
            model.Write(0, base_);
            Img.Create(path, size, 4096, 2, backing: "base.raw", backingFormat: "raw");
        }
        else
        {
            Img.Create(path, size, 4096, 2);
        }
        var options = new ImageOpenOptions { L2SliceSize = 512, L2CacheSize = 8 * 512 };
        await using var image = await Img.Open(path, useAsync, options: options);
        for (int op = 0; op < 120; op++)
        {
            long offset = random.NextInt64(size - 1);
            if (random.Next(2) == 0)
            {
                offset &= ~4095L;
            }
            long length = Math.Min(size - offset, random.Next(1, 1 << 20));
            string what = $"op {op} [{offset}, +{length})";
            switch (random.Next(4))
            {
                case 0:
                case 1:
                    byte[] data = Img.RandomBytes(random, (int)length);
                    await Img.Write(image, offset, data, useAsync);
                    model.Write(offset, data);
                    break;
                case 2:
                    await Img.WriteZeroes(image, offset, length, useAsync);
                    model.Zero(offset, length);
                    break;
                default:
                    byte[] read = await Img.Read(image, offset, (int)length, useAsync);
                    AssertSame(model.Expected(offset, (int)length), read, offset, what);
                    break;
            }
        }
        await VerifyAll(image, model, useAsync, "slices");
        // Closed before the reopen: the writer's locks (QED refuses other users' writes) would refuse a second open.
        await Img.Close(image, useAsync);
        await using var reopened = await Img.Open(path, useAsync, readOnly: true);
        await VerifyAll(reopened, model, useAsync, "slices after reopen");
        var check = useAsync ? await reopened.CheckAsync() : reopened.Check();
        Assert.True(check.IsClean, check.ToString());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task TinyL2Cache_StillMatchesTheModel(bool useAsync)
    {
        // One 512-byte slice cached: every lookup of another slice evicts, which exercises reload-after-update.
        var random = new Random(512);
        long size = 12L * Img.MiB + 512;
        var model = new Model();
        model.AddWindow(0, size);
        using var dir = new TempDirectory();
        string path = dir.File("tiny-cache.qed");
        Img.Create(path, size, 4096, 2);
        var options = new ImageOpenOptions { L2CacheSize = 512, L2SliceSize = 512 };
        Task<QedImage> Reopen() => Img.Open(path, useAsync, options: options);
        var image = await Reopen();
        try
        {
            Assert.Equal(1, image.CacheStatistics.Capacity);
            image = await RunOps(Reopen, image, model, random, 300, useAsync, "tiny cache");
            await VerifyAll(image, model, useAsync, "tiny cache");
            Assert.True(image.CacheStatistics.Evictions > 0);
        }
        finally
        {
            await Img.Close(image, useAsync);
        }
    }
}
