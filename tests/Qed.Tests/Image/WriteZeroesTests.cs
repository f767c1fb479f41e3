using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>Write-zeroes (QED-FORMAT.md §5.5) and normal writes into zero clusters (F09, F10, F11).</summary>
public class WriteZeroesTests
{
    private const int Cs = 65536;
    private const long L2 = 0x60000; // the first L2 table of a default image after one allocation

    private static string OverRawBase(TempDirectory dir, long size = 4 * Img.MiB)
    {
        Img.RawFile(dir.File("f07-base.raw"), 4 * Img.MiB, 0xb0);
        string path = dir.File("ov.qed");
        Img.Create(path, size, backing: "f07-base.raw", backingFormat: "raw");
        return path;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F09_AlignedUnallocatedOverBacking_BecomesZeroClusters(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = OverRawBase(dir);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.WriteZeroes(image, 0, 128 * 1024, useAsync);
            await Img.WriteZeroes(image, Img.MiB, 65536, useAsync);
            await Img.WriteZeroes(image, 2 * Img.MiB, 4096, useAsync); // unaligned: a real, allocating write

            var status = await Img.Status(image, 0, 4 * Img.MiB, useAsync);
            Assert.Equal(new BlockStatus(0, 128 * 1024, BlockState.Zero, -1), status);
            Assert.Equal(BlockState.Unallocated, (await Img.Status(image, 128 * 1024, Img.MiB, useAsync)).State);
            Assert.Equal(new BlockStatus(Img.MiB, Cs, BlockState.Zero, -1), await Img.Status(image, Img.MiB, Img.MiB, useAsync));
            Assert.Equal(BlockState.Data, (await Img.Status(image, 2 * Img.MiB, 4096, useAsync)).State);
        }
        Assert.Equal(0x50000UL, Img.FileU64(path, 0x10000)); // the L2 table is the first allocation
        Assert.Equal(1UL, Img.FileU64(path, 0x50000));
        Assert.Equal(1UL, Img.FileU64(path, 0x50000 + 8));
        Assert.Equal(1UL, Img.FileU64(path, 0x50000 + 16 * 8));
        Assert.Equal(0x90000UL, Img.FileU64(path, 0x50000 + 32 * 8));
        Assert.Equal(0xa0000, Img.FileLength(path));
        using var reader = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal("d185070e8bd87833c8e2fcc33ac322d424fb919399ce4568b6a83c2df65c61e9", DeviceDigest.Sha256(reader));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F10_AllocatedClusterStaysAllocated_WithZeros(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f10.qed");
        Img.Create(path, Img.MiB);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 0, 65536, 0x99, useAsync);
            long end = image.AllocationEnd;
            await Img.WriteZeroes(image, 0, 65536, useAsync);
            Assert.Equal(end, image.AllocationEnd);
            Assert.Equal(new BlockStatus(0, Cs, BlockState.Data, 0x50000), await Img.Status(image, 0, Img.MiB, useAsync));
            Img.AllBytes(0, await Img.Read(image, 0, Img.MiB, useAsync));
        }
        Assert.Equal(0x50000UL, Img.FileU64(path, L2));
        Img.AllBytes(0, Img.FileBytes(path, 0x50000, Cs), "data cluster on disk");
        using var reader = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal("30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58", DeviceDigest.Sha256(reader));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F11_PartialWriteIntoAZeroCluster_ZeroFillsTheRest(bool useAsync)
    {
        // Spec, not QEMU: QEMU 7.2 copies the backing file's 0xb0 into [0,4K) and [8K,64K) (digest d418bf11…).
        using var dir = new TempDirectory();
        string path = OverRawBase(dir);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.WriteZeroes(image, 0, 65536, useAsync);
        }
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 4096, 4096, 0xd1, useAsync);
            byte[] head = await Img.Read(image, 0, 2 * Cs, useAsync);
            Img.AllBytes(0, head.AsSpan(0, 4096));
            Img.AllBytes(0xd1, head.AsSpan(4096, 4096));
            Img.AllBytes(0, head.AsSpan(8192, Cs - 8192));
            Img.AllBytes(0xb0, head.AsSpan(Cs));
        }
        using var reader = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal("7445f92e5501547f6352468790b5ca687fa4a3ad4254c00c7fa082c24372ba31", DeviceDigest.Sha256(reader));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WriteSpanningZeroAndUnallocatedClusters_FillsEachFromItsOwnState(bool useAsync)
    {
        // Cluster 0 is a zero cluster, cluster 1 unallocated: a write from 60K to 68K must zero-fill the head of
        // cluster 0 and copy the backing file into the tail of cluster 1.
        using var dir = new TempDirectory();
        string path = OverRawBase(dir);
        await using var image = await Img.Open(path, useAsync);
        await Img.WriteZeroes(image, 0, Cs, useAsync);
        await Img.Write(image, 60 * 1024, 8192, 0xd2, useAsync);
        byte[] all = await Img.Read(image, 0, 2 * Cs, useAsync);
        Img.AllBytes(0, all.AsSpan(0, 60 * 1024));
        Img.AllBytes(0xd2, all.AsSpan(60 * 1024, 8192));
        Img.AllBytes(0xb0, all.AsSpan(68 * 1024));

        // And the other way round: cluster 2 unallocated, cluster 3 zero.
        await Img.WriteZeroes(image, 3 * Cs, Cs, useAsync);
        await Img.Write(image, 3 * Cs - 4096, 8192, 0xd3, useAsync);
        all = await Img.Read(image, 2 * Cs, 2 * Cs, useAsync);
        Img.AllBytes(0xb0, all.AsSpan(0, Cs - 4096));
        Img.AllBytes(0xd3, all.AsSpan(Cs - 4096, 8192));
        Img.AllBytes(0, all.AsSpan(Cs + 4096));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task UnalignedHeadAndTail_AreRealWrites_MiddleBecomesAZeroCluster(bool useAsync)
    {
        // qemu-io `write -z 60k 72k` over F07's backing: cluster 0 allocated (backing 0–60K, zeros after),
        // L2[1] = 1, cluster 2 allocated (zeros 128–132K, backing after).
        using var dir = new TempDirectory();
        string path = OverRawBase(dir);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.WriteZeroes(image, 60 * 1024, 72 * 1024, useAsync);
            byte[] all = await Img.Read(image, 0, 4 * Cs, useAsync);
            Img.AllBytes(0xb0, all.AsSpan(0, 60 * 1024));
            Img.AllBytes(0, all.AsSpan(60 * 1024, 72 * 1024));
            Img.AllBytes(0xb0, all.AsSpan(132 * 1024));
            Assert.Equal(BlockState.Data, (await Img.Status(image, 0, Cs, useAsync)).State);
            Assert.Equal(BlockState.Zero, (await Img.Status(image, Cs, Cs, useAsync)).State);
            Assert.Equal(BlockState.Data, (await Img.Status(image, 2 * Cs, Cs, useAsync)).State);
            Assert.Equal(BlockState.Unallocated, (await Img.Status(image, 3 * Cs, Cs, useAsync)).State);
        }
        ulong l1 = Img.FileU64(path, 0x10000);
        Assert.NotEqual(0UL, l1);
        Assert.Equal(1UL, Img.FileU64(path, (long)l1 + 8));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ZeroClusterAgain_DoesNoIo(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = OverRawBase(dir);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.WriteZeroes(image, 0, 4 * Cs, useAsync);
        }
        string before = Tools.Sha256OfFile(path);
        var file = new ObservedFileAccessor(HandleFileAccessor.Open(path, readOnly: false));
        await using (var image = await Img.OpenOver(file, useAsync))
        {
            file.Log.Clear();
            await Img.WriteZeroes(image, 0, 4 * Cs, useAsync);
            await Img.WriteZeroes(image, Cs, Cs, useAsync);
            Assert.DoesNotContain(file.Log, e => e[0] == 'W');
        }
        Assert.Equal(before, Tools.Sha256OfFile(path));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task MixedRange_EachClusterTreatedByItsState(bool useAsync)
    {
        // clusters: 0 data, 1 unallocated, 2 zero, 3 data, 4 unallocated; write-zeroes over all five.
        using var dir = new TempDirectory();
        string path = OverRawBase(dir);
        await using var image = await Img.Open(path, useAsync);
        await Img.Write(image, 0, Cs, 0x01, useAsync);
        await Img.WriteZeroes(image, 2 * Cs, Cs, useAsync);
        await Img.Write(image, 3 * Cs, Cs, 0x03, useAsync);
        long end = image.AllocationEnd;
        await Img.WriteZeroes(image, 0, 5 * Cs, useAsync);
        Assert.Equal(end, image.AllocationEnd);
        Img.AllBytes(0, await Img.Read(image, 0, 5 * Cs, useAsync));
        Img.AllBytes(0xb0, await Img.Read(image, 5 * Cs, Cs, useAsync));
        Assert.Equal(BlockState.Data, (await Img.Status(image, 0, Cs, useAsync)).State);
        Assert.Equal(new BlockStatus(Cs, 2 * Cs, BlockState.Zero, -1), await Img.Status(image, Cs, 4 * Cs, useAsync));
        Assert.Equal(BlockState.Data, (await Img.Status(image, 3 * Cs, Cs, useAsync)).State);
        Assert.Equal(BlockState.Zero, (await Img.Status(image, 4 * Cs, Cs, useAsync)).State);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WithoutBackingFile_AlignedUnallocated_ReadsZerosAndAllocatesNoData(bool useAsync)
    {
        // QEMU writes zero markers even here (allocating an L2 table); we skip it since unallocated already reads as
        // zeros without a backing file. Either way no data cluster may be allocated.
        using var dir = new TempDirectory();
        string path = dir.File("nb.qed");
        Img.Create(path, 4 * Img.MiB);
        await using var image = await Img.Open(path, useAsync);
        await Img.WriteZeroes(image, Cs, 3 * Cs, useAsync);
        var status = await Img.Status(image, Cs, 3 * Cs, useAsync);
        Assert.NotEqual(BlockState.Data, status.State);
        Assert.True(image.AllocationEnd <= 0x50000 + 0x40000);
        Img.AllBytes(0, await Img.Read(image, 0, 4 * Img.MiB, useAsync));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ZeroMarkersAcrossL2Boundary_WithSmallClusters(bool useAsync)
    {
        // 4K/ts1: one L2 maps 2 MiB; zero 3 MiB aligned, crossing into a second (new) table.
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("base.raw"), 6 * Img.MiB, 0x5b);
        string path = dir.File("z.qed");
        Img.Create(path, 6 * Img.MiB, 4096, 1, backing: "base.raw", backingFormat: "raw");
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.WriteZeroes(image, Img.MiB, 3 * Img.MiB, useAsync);
        }
        await using (var image = await Img.Open(path, useAsync, readOnly: true))
        {
            byte[] all = await Img.Read(image, 0, 6 * Img.MiB, useAsync);
            Img.AllBytes(0x5b, all.AsSpan(0, Img.MiB));
            Img.AllBytes(0, all.AsSpan(Img.MiB, 3 * Img.MiB));
            Img.AllBytes(0x5b, all.AsSpan(4 * Img.MiB));
            Assert.Equal(new BlockStatus(Img.MiB, Img.MiB, BlockState.Zero, -1), await Img.Status(image, Img.MiB, 3 * Img.MiB, useAsync));
            Assert.Equal(new BlockStatus(2 * Img.MiB, 2 * Img.MiB, BlockState.Zero, -1), await Img.Status(image, 2 * Img.MiB, 3 * Img.MiB, useAsync));
        }
        // Two tables of one cluster each, no data.
        Assert.Equal(0x2000 + 2 * 0x1000, Img.FileLength(path));
    }
}
