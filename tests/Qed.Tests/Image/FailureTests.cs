using Qed.Check;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>What a failed write inside an allocation leaves behind in the open image (the cache must keep matching the disk).</summary>
public class FailureTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task FailedL1Update_ThenLeakRepair_ThenNewTableAtTheSameOffset_ReadsTheNewTable(bool useAsync)
    {
        // 1. Allocating write at guest 0: data 0x50000, new L2 0x60000 written, flushed and published in the cache;
        //    the L1 write fails, so nothing on disk references them.
        // 2. A leak repair truncates them away: the allocation pointer moves back to 0x50000.
        // 3. A write at guest 64K allocates data 0x50000 and a new L2 table at 0x60000 again.
        // The cache must then hold the new table (L2[1] = 0x50000), not the one published in step 1 (L2[0] = 0x50000).
        using var dir = new TempDirectory();
        string path = dir.File("l1fail.qed");
        Img.Create(path, 16 * Img.MiB);
        var file = new ObservedFileAccessor(HandleFileAccessor.Open(path, readOnly: false));
        bool failed = false;
        file.BeforeWrite = (offset, length) =>
        {
            if (!failed && offset >= 0x10000 && offset < 0x50000)
            {
                failed = true;
                throw new IOException("injected L1 write failure");
            }
        };
        await using var image = await Img.OpenOver(file, useAsync);
        await Assert.ThrowsAsync<IOException>(() => Img.Write(image, 0, 4096, 0xaa, useAsync));
        Assert.True(failed);
        Img.AllBytes(0, await Img.Read(image, 0, 65536, useAsync), "guest 0 after the failed write");

        CheckResult result = useAsync ? await image.CheckAsync(RepairMode.All) : image.Check(RepairMode.All);
        Assert.Equal(0, result.Corruptions);
        long end = image.AllocationEnd;

        await Img.Write(image, 65536, 4096, 0xbb, useAsync);
        Img.AllBytes(0xbb, await Img.Read(image, 65536, 4096, useAsync), $"guest 64K (allocation end after repair 0x{end:x})");
        Img.AllBytes(0, await Img.Read(image, 0, 65536, useAsync), "guest 0");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task FailedL2BlockWrite_LeavesTheCachedTableAsOnDisk(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("l2fail.qed");
        Img.Create(path, 16 * Img.MiB);
        var file = new ObservedFileAccessor(HandleFileAccessor.Open(path, readOnly: false));
        await using var image = await Img.OpenOver(file, useAsync);
        await Img.Write(image, 0, 4096, 0x01, useAsync); // L2 at 0x60000 now exists
        bool failed = false;
        file.BeforeWrite = (offset, length) =>
        {
            if (!failed && offset >= 0x60000 && offset < 0xa0000)
            {
                failed = true;
                throw new IOException("injected L2 write failure");
            }
        };
        await Assert.ThrowsAsync<IOException>(() => Img.Write(image, 65536, 4096, 0x02, useAsync));
        Assert.True(failed);
        Assert.Equal(0UL, Img.FileU64(path, 0x60008));
        Img.AllBytes(0, await Img.Read(image, 65536, 4096, useAsync));
        Assert.Equal(Qed.IO.BlockState.Unallocated, (await Img.Status(image, 65536, 65536, useAsync)).State);
        // The gate was released: the next write goes through.
        await Img.Write(image, 65536, 4096, 0x03, useAsync);
        Img.AllBytes(0x03, await Img.Read(image, 65536, 4096, useAsync));
        Img.AllBytes(0x01, await Img.Read(image, 0, 4096, useAsync));
    }
}
