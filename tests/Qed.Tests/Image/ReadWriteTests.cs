using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>Open/read/write round trips over every geometry, sync and async, and the request-range and read-only rules.</summary>
public class ReadWriteTests
{
    /// <summary>Writes a few patterns that cover an unaligned head and tail, whole clusters, and an L2 boundary.</summary>
    [Theory]
    [MemberData(nameof(Img.GeometriesAndModes), MemberType = typeof(Img))]
    public async Task RoundTrip_SurvivesReopen(int cs, int ts, bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("rt.qed");
        var geometry = new Qed.Format.QedGeometry(cs, ts);
        long span = geometry.L2Span;
        long size = span + 3L * cs + 1536;
        Img.Create(path, size, cs, ts);

        var writes = new (long Offset, byte[] Data)[]
        {
            (0, Img.Fill(512, 0x11)),
            (cs + 100, Img.Fill(cs, 0x22)), // straddles clusters 1 and 2, unaligned
            (3L * cs, Img.Fill(2 * cs, 0x33)), // two whole clusters
            (span - cs - 7, Img.Fill(cs + 20, 0x44)), // crosses the first L2 boundary
            (size - 1000, Img.Fill(1000, 0x55)), // the very end of an image whose last cluster is partial
        };

        await using (var image = await Img.Open(path, useAsync))
        {
            foreach (var (offset, data) in writes)
            {
                await Img.Write(image, offset, data, useAsync);
            }
            foreach (var (offset, data) in writes)
            {
                Assert.Equal(data, await Img.Read(image, offset, data.Length, useAsync));
            }
        }

        await using (var image = await Img.Open(path, useAsync, readOnly: true))
        {
            foreach (var (offset, data) in writes)
            {
                Assert.Equal(data, await Img.Read(image, offset, data.Length, useAsync));
            }
            // Untouched neighbours read as zeros.
            Img.AllBytes(0, await Img.Read(image, 512, cs + 100 - 512, useAsync), "between first writes");
            Img.AllBytes(0, await Img.Read(image, 2L * cs + 100, cs - 100, useAsync), "after the straddling write");
            Img.AllBytes(0, await Img.Read(image, span + 13, 2 * cs, useAsync), "after the L2-crossing write");
        }
    }

    [Theory]
    [InlineData(4096, 1, false)]
    [InlineData(4096, 1, true)]
    [InlineData(65536, 4, false)]
    [InlineData(65536, 4, true)]
    [InlineData(1 << 20, 16, false)]
    public async Task LastSectorOfTheLargestImage_MapsThroughTheLastL1AndL2Entries(int cs, int ts, bool useAsync)
    {
        // 1 GiB, 64 TiB and 4 EiB: the index arithmetic at the top of the address space.
        var geometry = new Qed.Format.QedGeometry(cs, ts);
        long size = geometry.MaxImageSize;
        using var dir = new TempDirectory();
        string path = dir.File("max.qed");
        Img.Create(path, size, cs, ts);
        byte[] data = Img.RandomBytes(new Random(cs), 512);
        await using (var image = await Img.Open(path, useAsync))
        {
            Assert.Equal(size, image.Size);
            await Img.Write(image, size - 512, data, useAsync);
            Assert.Equal(data, await Img.Read(image, size - 512, 512, useAsync));
            Img.AllBytes(0, await Img.Read(image, size - cs, cs - 512, useAsync));
            Img.AllBytes(0, await Img.Read(image, 0, 4096, useAsync));
        }
        long l1Last = cs + (long)(geometry.TableEntries - 1) * 8;
        ulong table = Img.FileU64(path, l1Last);
        Assert.Equal((ulong)(cs + geometry.TableBytes + cs), table); // after the one data cluster
        Assert.Equal((ulong)(cs + geometry.TableBytes), Img.FileU64(path, (long)table + (long)(geometry.TableEntries - 1) * 8));
        await using (var image = await Img.Open(path, useAsync, readOnly: true))
        {
            Assert.Equal(data, await Img.Read(image, size - 512, 512, useAsync));
            var status = await Img.Status(image, size - cs, cs, useAsync);
            Assert.Equal(Qed.IO.BlockState.Data, status.State);
        }
    }

    [Theory]
    [MemberData(nameof(Img.GeometriesAndModes), MemberType = typeof(Img))]
    public async Task OverwriteInPlace_DoesNotGrowTheFile(int cs, int ts, bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("inplace.qed");
        Img.Create(path, 4L * cs, cs, ts);
        await using var image = await Img.Open(path, useAsync);
        await Img.Write(image, 0, 2 * cs, 0x01, useAsync);
        long end = image.AllocationEnd;
        await Img.Write(image, 17, Img.Fill(cs, 0x02), useAsync);
        Assert.Equal(end, image.AllocationEnd);
        byte[] read = await Img.Read(image, 0, 2 * cs, useAsync);
        Img.AllBytes(0x01, read.AsSpan(0, 17));
        Img.AllBytes(0x02, read.AsSpan(17, cs));
        Img.AllBytes(0x01, read.AsSpan(17 + cs));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task LargeWrite_CoveringManyClustersAndTables(bool useAsync)
    {
        // 4K/ts1: one L2 maps 2 MiB; a 5 MiB write crosses three L2 tables in one request.
        using var dir = new TempDirectory();
        string path = dir.File("large.qed");
        Img.Create(path, 8 * Img.MiB, 4096, 1);
        byte[] data = Img.RandomBytes(new Random(5), 5 * Img.MiB + 3000);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 1 * Img.MiB + 123, data, useAsync);
            Assert.Equal(data, await Img.Read(image, 1 * Img.MiB + 123, data.Length, useAsync));
        }
        await using (var image = await Img.Open(path, useAsync))
        {
            Assert.Equal(data, await Img.Read(image, 1 * Img.MiB + 123, data.Length, useAsync));
            Img.AllBytes(0, await Img.Read(image, 0, Img.MiB + 123, useAsync));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task LargeAllocatingWrite_With1MiBClusters_CopiesUpHeadAndTail(bool useAsync)
    {
        // More than 1 MiB of new clusters: the engine writes head, payload and tail separately.
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("base.raw"), 8 * Img.MiB, 0xb0);
        string path = dir.File("top.qed");
        Img.Create(path, 8 * Img.MiB, 1 << 20, 2, backing: "base.raw", backingFormat: "raw");
        await using var image = await Img.Open(path, useAsync);
        await Img.Write(image, Img.MiB + 5000, Img.Fill(3 * Img.MiB, 0xc1), useAsync);
        byte[] all = await Img.Read(image, 0, 8 * Img.MiB, useAsync);
        Img.AllBytes(0xb0, all.AsSpan(0, Img.MiB + 5000));
        Img.AllBytes(0xc1, all.AsSpan(Img.MiB + 5000, 3 * Img.MiB));
        Img.AllBytes(0xb0, all.AsSpan(4 * Img.MiB + 5000));
        Assert.Equal(1 << 20, (await Img.Status(image, Img.MiB, Img.MiB, useAsync)).Length);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task EmptyRequests_AreFine(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("e.qed");
        Img.Create(path, Img.MiB);
        await using var image = await Img.Open(path, useAsync);
        await Img.Read(image, 0, 0, useAsync);
        await Img.Read(image, Img.MiB, 0, useAsync);
        await Img.Write(image, Img.MiB, Array.Empty<byte>(), useAsync);
        await Img.WriteZeroes(image, 0, 0, useAsync);
        Assert.Equal(0x50000, image.AllocationEnd);
    }

    public static TheoryData<long, int, bool> OutOfRange()
    {
        var data = new TheoryData<long, int, bool>();
        foreach (bool useAsync in new[] { false, true })
        {
            data.Add(Img.MiB, 1, useAsync); // starts at the end
            data.Add(Img.MiB - 511, 512, useAsync); // straddles the end (iotest 004)
            data.Add(Img.MiB + 4096, 512, useAsync); // beyond
            data.Add(-1, 1, useAsync);
            data.Add(long.MaxValue, 1, useAsync);
            data.Add(long.MinValue, 1, useAsync);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(OutOfRange))]
    public async Task RequestsBeyondTheImage_ThrowAndChangeNothing(long offset, int length, bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("range.qed");
        Img.Create(path, Img.MiB);
        string before = Tools.Sha256OfFile(path);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Img.Read(image, offset, length, useAsync));
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Img.Write(image, offset, length, 0x77, useAsync));
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Img.WriteZeroes(image, offset, length, useAsync));
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Img.Status(image, offset, length, useAsync));
            Assert.Equal(0x50000, image.AllocationEnd);
            Assert.False(image.Header.NeedsCheck);
        }
        Assert.Equal(before, Tools.Sha256OfFile(path));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WriteZeroes_NegativeLength_Throws(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("neg.qed");
        Img.Create(path, Img.MiB);
        await using var image = await Img.Open(path, useAsync);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Img.WriteZeroes(image, 0, -1, useAsync));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Img.Status(image, 0, 0, useAsync));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ReadOnlyImage_RefusesWrites_AndChangesNothing(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("ro.qed");
        Img.Create(path, Img.MiB);
        using (var image = QedImage.Open(path))
        {
            image.Write(Img.Fill(4096, 0x42), 0);
        }
        string before = Tools.Sha256OfFile(path);
        await using (var image = await Img.Open(path, useAsync, readOnly: true))
        {
            Assert.True(image.IsReadOnly);
            var e = await Assert.ThrowsAsync<QedReadOnlyException>(() => Img.Write(image, 0, 512, 0x01, useAsync));
            Assert.Contains("read-only", e.Message, StringComparison.Ordinal);
            await Assert.ThrowsAsync<QedReadOnlyException>(() => Img.Write(image, 8192, 512, 0x01, useAsync));
            await Assert.ThrowsAsync<QedReadOnlyException>(() => Img.WriteZeroes(image, 0, 65536, useAsync));
            await Img.Flush(image, useAsync);
            Img.AllBytes(0x42, await Img.Read(image, 0, 4096, useAsync));
        }
        Assert.Equal(before, Tools.Sha256OfFile(path));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DiskImage_ProbesQedAndRaw(bool useAsync)
    {
        using var dir = new TempDirectory();
        string qed = dir.File("p.qed");
        Img.Create(qed, Img.MiB);
        string raw = dir.File("p.raw");
        Img.RawFile(raw, 3000, 0x61);
        await using (var device = useAsync ? await DiskImage.OpenAsync(qed) : DiskImage.Open(qed))
        {
            Assert.IsType<QedImage>(device);
            Assert.Equal("qed", device.FormatName);
        }
        await using (var device = useAsync ? await DiskImage.OpenAsync(raw) : DiskImage.Open(raw))
        {
            Assert.IsType<RawImage>(device);
            Assert.Equal(3000, device.Size);
            Img.AllBytes(0x61, await Img.Read(device, 0, 3000, useAsync));
        }
        // A QED file forced to raw is just bytes.
        await using (var device = useAsync ? await DiskImage.OpenAsync(qed, "raw") : DiskImage.Open(qed, "raw"))
        {
            Assert.Equal(0x50000, device.Size);
        }
    }

    [Theory]
    [InlineData(4096, 1)]
    [InlineData(65536, 4)]
    public async Task SyncWrites_AsyncReads_Agree(int cs, int ts)
    {
        using var dir = new TempDirectory();
        string path = dir.File("mix.qed");
        Img.Create(path, 4 * Img.MiB, cs, ts);
        byte[] data = Img.RandomBytes(new Random(9), 300_000);
        using (var image = QedImage.Open(path))
        {
            image.Write(data, 12345);
        }
        await using (var image = await QedImage.OpenAsync(path))
        {
            Assert.Equal(data, await Img.Read(image, 12345, data.Length, useAsync: true));
        }
    }
}
