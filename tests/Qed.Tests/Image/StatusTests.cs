using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>GetStatus: extents of one state, data extents contiguous in the file, as this layer alone sees them.</summary>
public class StatusTests
{
    private const int Cs = 65536;

    private static async Task<List<BlockStatus>> Map(BlockDevice image, bool useAsync)
    {
        var extents = new List<BlockStatus>();
        for (long offset = 0; offset < image.Size;)
        {
            var status = await Img.Status(image, offset, image.Size - offset, useAsync);
            Assert.Equal(offset, status.Offset);
            Assert.True(status.Length > 0);
            if (extents.Count > 0 && extents[^1].State == status.State && status.State != BlockState.Data)
            {
                // Callers merge neighbours of one state; the device may split them at table or slice boundaries.
                extents[^1] = extents[^1] with { Length = extents[^1].Length + status.Length };
            }
            else if (extents.Count > 0 && status.State == BlockState.Data && extents[^1].State == BlockState.Data
                && extents[^1].HostOffset + extents[^1].Length == status.HostOffset)
            {
                extents[^1] = extents[^1] with { Length = extents[^1].Length + status.Length };
            }
            else
            {
                extents.Add(status);
            }
            offset += status.Length;
        }
        return extents;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Extents_FollowTheLayout(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("base.raw"), 2 * Img.MiB, 0xb0);
        string path = dir.File("map.qed");
        Img.Create(path, 2 * Img.MiB, backing: "base.raw", backingFormat: "raw");
        await using var image = await Img.Open(path, useAsync);
        await Img.Write(image, 4096, 4096, 0x01, useAsync); // cluster 0 -> 0x50000, L2 0x60000
        await Img.Write(image, 2 * Cs, 3 * Cs, 0x02, useAsync); // clusters 2-4 -> 0xa0000..0xcffff, one run
        await Img.Write(image, 5 * Cs, 10, 0x03, useAsync); // cluster 5 -> 0xd0000, continues the run in the file
        await Img.WriteZeroes(image, 8 * Cs, 2 * Cs, useAsync); // clusters 8-9 zero

        var map = await Map(image, useAsync);
        Assert.Equal(
            new[]
            {
                new BlockStatus(0, Cs, BlockState.Data, 0x50000),
                new BlockStatus(Cs, Cs, BlockState.Unallocated, -1),
                new BlockStatus(2 * Cs, 4 * Cs, BlockState.Data, 0xa0000),
                new BlockStatus(6 * Cs, 2 * Cs, BlockState.Unallocated, -1),
                new BlockStatus(8 * Cs, 2 * Cs, BlockState.Zero, -1),
                new BlockStatus(10 * Cs, 2 * Img.MiB - 10 * Cs, BlockState.Unallocated, -1),
            },
            map);

        // Mid-cluster queries report the host byte, and never run past the requested length.
        Assert.Equal(new BlockStatus(3 * Cs + 100, 3 * Cs - 100, BlockState.Data, 0xb0000 + 100), await Img.Status(image, 3 * Cs + 100, 4 * Cs, useAsync));
        Assert.Equal(new BlockStatus(3 * Cs + 100, 50, BlockState.Data, 0xb0000 + 100), await Img.Status(image, 3 * Cs + 100, 50, useAsync));
        Assert.Equal(new BlockStatus(8 * Cs + 1, 10, BlockState.Zero, -1), await Img.Status(image, 8 * Cs + 1, 10, useAsync));
        Assert.Equal(new BlockStatus(2 * Img.MiB - 512, 512, BlockState.Unallocated, -1), await Img.Status(image, 2 * Img.MiB - 512, 512, useAsync));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task EmptyImage_IsOneUnallocatedExtent(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("empty.qed");
        Img.Create(path, 64L << 30);
        await using var image = await Img.Open(path, useAsync, readOnly: true);
        var map = await Map(image, useAsync);
        Assert.Equal(new[] { new BlockStatus(0, 64L << 30, BlockState.Unallocated, -1) }, map);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task RawImage_IsAllData(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("r.raw"), 10_000, 1);
        await using var raw = useAsync ? await DiskImage.OpenAsync(dir.File("r.raw"), "raw") : DiskImage.Open(dir.File("r.raw"), "raw");
        Assert.Equal(new BlockStatus(100, 9900, BlockState.Data, 100), await Img.Status(raw, 100, 9900, useAsync));
    }
}
