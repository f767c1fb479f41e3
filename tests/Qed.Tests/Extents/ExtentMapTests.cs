using Qed.Extents;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;
using static Qed.Tests.Extents.ExtentTestSupport;

namespace Qed.Tests.Extents;

/// <summary>The extent map against <c>qemu-img map --output=json</c>: QED images, chains, raw files with holes, zero clusters; sync and async.</summary>
public class ExtentMapTests
{
    private static async Task AssertMapsLikeQemu(TempDirectory dir, string image, string format, bool useAsync)
    {
        var qemu = QemuOracle.Map(dir.Path, image, format);
        await using var device = await DiskImage.OpenAsync(dir.File(image), format, new ImageOpenOptions { ReadOnly = true });
        var ours = (await Map(device, useAsync)).Select(AsQemu).ToList();
        Assert.Equal(qemu, ours);
        // The other mode walks the same map.
        Assert.Equal(ours, (await Map(device, !useAsync)).Select(AsQemu).ToList());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Qed_image_with_data_zero_clusters_and_several_tables(bool useAsync)
    {
        using var dir = new TempDirectory();
        // 4 KiB clusters and two-cluster tables: each L2 table maps 4 MiB, so extents cross table boundaries (QEMU refuses
        // to open images with one-cluster tables).
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", "a.qed", "24M");
        Tools.QemuIo(dir.Path, "qed", "a.qed",
            "write -P 0x11 0 8k", "write -P 0x12 20k 4k", "write -z 64k 12k", "write -P 0x13 4092k 8k",
            "write -z 5M 4M", "write -P 0x14 17M 4k", "write -z 17M 4k", "write -P 0x15 24572k 4k");
        await AssertMapsLikeQemu(dir, "a.qed", "qed", useAsync);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Raw_file_with_holes(bool useAsync)
    {
        using var dir = new TempDirectory();
        SparseRaw(dir.File("r.raw"), 8 * MiB, (MiB, 65536, 0x21), (MiB + 65536, 65536, 0x22), (5 * MiB, 4096, 0x23), (8 * MiB - 4096, 4096, 0x24));
        await AssertMapsLikeQemu(dir, "r.raw", "raw", useAsync);

        await using var raw = RawImage.Open(dir.File("r.raw"), readOnly: true);
        var map = await Map(raw, useAsync);
        Assert.Equal(new Extent(0, MiB, BlockState.Zero, 0, 0, raw), map[0]);
        Assert.Equal(new Extent(MiB, 2 * 65536, BlockState.Data, 0, MiB, raw), map[1]);
    }

    [Fact]
    public void A_file_system_without_holes_reports_everything_as_data()
    {
        using var raw = new RawImage(new MemoryFileAccessor("mem.raw", new byte[3 * 65536]));
        Assert.Equal([new Extent(0, 3 * 65536, BlockState.Data, 0, 0, raw)], ExtentMap.Enumerate(raw));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Qed_over_qed_over_a_shorter_raw_with_holes(bool useAsync)
    {
        using var dir = new TempDirectory();
        SparseRaw(dir.File("base.raw"), 3 * MiB, (0, 131072, 0x31), (2 * MiB, 65536, 0x32));
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", "mid.qed", "6M");
        Tools.QemuIo(dir.Path, "qed", "mid.qed", "write -P 0x41 64k 64k", "write -z 1M 128k", "write -P 0x42 4M 64k", "write -z 5M 64k");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-b", "mid.qed", "-F", "qed", "top.qed", "8M");
        Tools.QemuIo(dir.Path, "qed", "top.qed", "write -P 0x51 2M 64k", "write -z 4M 64k", "write -P 0x52 7M 64k");
        await AssertMapsLikeQemu(dir, "top.qed", "qed", useAsync);

        await using var top = await DiskImage.OpenAsync(dir.File("top.qed"), "qed", new ImageOpenOptions { ReadOnly = true });
        var map = await Map(top, useAsync);
        // Past the end of the 3 MiB raw file (below mid.qed's unallocated clusters) nothing answers: depth 1, unallocated.
        var past = Assert.Single(map, e => e.Offset <= 3 * MiB && e.End > 3 * MiB);
        Assert.Equal((BlockState.Unallocated, 1, -1L), (past.State, past.Depth, past.HostOffset));
        Assert.Same(top.Backing, past.Device);
        var fromBase = Assert.Single(map, e => e.Offset == 0);
        Assert.Equal((BlockState.Data, 2, "base.raw"), (fromBase.State, fromBase.Depth, Path.GetFileName(fromBase.Device.FileName)));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Random_chains_map_like_qemu(bool useAsync)
    {
        var random = new Random(TestSeed.For($"{nameof(ExtentMapTests)}.{nameof(Random_chains_map_like_qemu)}({useAsync})"));
        const int Cases = 4;
        int ran = 0;
        for (int i = 0; i < Cases; i++)
        {
            using var dir = new TempDirectory();
            SparseRaw(dir.File("base.raw"), 2 * MiB, (random.Next(32) * 65536, 65536, 0x61), (random.Next(32) * 65536, 4096, 0x62));
            Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", "-b", "base.raw", "-F", "raw", "mid.qed", "6M");
            Tools.QemuIo(dir.Path, "qed", "mid.qed", RandomOps(random, 6 * MiB));
            Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=8192,table_size=2", "-b", "mid.qed", "-F", "qed", "top.qed", "12M");
            Tools.QemuIo(dir.Path, "qed", "top.qed", RandomOps(random, 12 * MiB));
            await AssertMapsLikeQemu(dir, "top.qed", "qed", useAsync);
            ran++;
        }
        Assert.Equal(Cases, ran);
    }

    /// <summary>A dozen writes and write-zeroes at cluster-aligned places, some of them long.</summary>
    private static string[] RandomOps(Random random, long size)
    {
        var ops = new string[12];
        for (int i = 0; i < ops.Length; i++)
        {
            long length = random.Next(1, random.Next(2) == 0 ? 4 : 64) * 4096L;
            long offset = random.NextInt64((size - length) / 4096) * 4096;
            ops[i] = random.Next(3) == 0 ? $"write -z {offset} {length}" : $"write -P {random.Next(1, 255)} {offset} {length}";
        }
        return ops;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task One_extent_from_the_middle_is_clamped_to_the_range(bool useAsync)
    {
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "a.qed", "4M");
        Tools.QemuIo(dir.Path, "qed", "a.qed", "write -P 0x71 0 256k");
        await using var image = await Img.Open(dir.File("a.qed"), useAsync, readOnly: true);
        var data = ExtentMap.Enumerate(image).First();
        Extent Get(long offset, long length) => useAsync
            ? ExtentMap.GetExtentAsync(image, offset, length).AsTask().GetAwaiter().GetResult()
            : ExtentMap.GetExtent(image, offset, length);
        Assert.Equal(new Extent(100, 256 * 1024 - 100, BlockState.Data, 0, data.HostOffset + 100, image), Get(100, 4 * MiB - 100));
        Assert.Equal(new Extent(100, 50, BlockState.Data, 0, data.HostOffset + 100, image), Get(100, 50));
        Assert.Equal(new Extent(256 * 1024, 4 * MiB - 256 * 1024, BlockState.Unallocated, 0, -1, image), Get(256 * 1024, 4 * MiB - 256 * 1024));
        Assert.Throws<ArgumentOutOfRangeException>(() => ExtentMap.GetExtent(image, 4 * MiB, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ExtentMap.GetExtent(image, 0, 0));
        Assert.Empty(ExtentMap.Enumerate(image, 4 * MiB, 0));
    }
}
