using Qed.Extents;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Api;

/// <summary>The derived views of <see cref="Extent"/> (qemu-img map's present/zero/data, NBD's allocation depth) on a two-layer chain holding one extent of each kind.</summary>
public sealed class ExtentViewTests : IDisposable
{
    private const int Cs = 65536;
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Each_kind_of_extent_reports_its_views()
    {
        string basePath = _dir.File("base.qed"), topPath = _dir.File("top.qed");
        QedImage.Create(basePath, new QedCreateOptions { Size = 4 * Cs });
        using (var lower = QedImage.Open(basePath))
        {
            lower.Write(new byte[Cs].AsMemory(), 2 * Cs);
        }
        QedImage.Create(topPath, new QedCreateOptions { Size = 4 * Cs, BackingFile = "base.qed" });
        using var top = QedImage.Open(topPath);
        top.Write(new byte[] { 1 }.AsMemory(), 0);
        top.WriteZeroes(Cs, Cs);

        var extents = ExtentMap.Enumerate(top).ToArray();

        // cluster 0: data in the top (depth 0); 1: a zero cluster of the top; 2: data of the base (depth 1); 3: nowhere.
        Assert.Equal([BlockState.Data, BlockState.Zero, BlockState.Data, BlockState.Unallocated], extents.Select(e => e.State));
        Assert.Equal([0, 0, 1, 1], extents.Select(e => e.Depth));
        Assert.Equal([1, 1, 2, 0], extents.Select(e => e.AllocationDepth));
        Assert.Equal([true, true, true, false], extents.Select(e => e.IsPresent));
        Assert.Equal([false, true, false, true], extents.Select(e => e.ReadsAsZeros));
        Assert.Equal([true, false, true, false], extents.Select(e => e.IsData));
        Assert.Equal([Cs, 2 * Cs, 3 * Cs, 4 * Cs], extents.Select(e => e.End));
        Assert.Same(top, extents[0].Device);
        Assert.Same(top.Backing, extents[2].Device);
    }
}
