using Qed.Image;
using Qed.IO;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Device;

/// <summary>Write-zeroes with and without the may-unmap flag, and discard, on QED (with and without backing file) and raw, checked against qemu-io's reads and qemu-img check.</summary>
public class ZeroAndDiscardTests
{
    private const int Cs = 65536;
    private const int Kib = 1024;
    private const long Size = 4 * Img.MiB;

    [Theory]
    [MemberData(nameof(Dev.KindsAndModes), MemberType = typeof(Dev))]
    public async Task WriteZeroes_UnmapFreesSpace_KeepKeepsIt_BothReadZeros(string kind, bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = Dev.Create(dir, kind, Size);
        byte untouched = Dev.Untouched(kind);
        long freed;
        await using (var device = await Dev.Open(path, kind, useAsync))
        {
            await Img.Write(device, 0, Img.Fill(Img.MiB, 0x55), useAsync);
            long before = Dev.AllocatedBlocks(path);
            await Dev.WriteZeroes(device, 0, 256 * Kib, WriteZeroesFlags.MayUnmap, useAsync);
            await Dev.WriteZeroes(device, 256 * Kib, 256 * Kib, WriteZeroesFlags.None, useAsync);
            await Dev.WriteZeroes(device, 512 * Kib + 100, 1000, WriteZeroesFlags.MayUnmap, useAsync);
            await Dev.WriteZeroes(device, 2 * Img.MiB, 2 * Cs, WriteZeroesFlags.MayUnmap, useAsync);
            freed = before - Dev.AllocatedBlocks(path);

            Img.AllBytes(0, await Img.Read(device, 0, 512 * Kib, useAsync), "zeroed");
            Img.AllBytes(0x55, await Img.Read(device, 512 * Kib, 100, useAsync), "before the partial zeroes");
            Img.AllBytes(0, await Img.Read(device, 512 * Kib + 100, 1000, useAsync), "partial zeroes");
            Img.AllBytes(0x55, await Img.Read(device, 512 * Kib + 1100, Img.MiB - 512 * Kib - 1100, useAsync), "after the partial zeroes");
            Img.AllBytes(untouched, await Img.Read(device, Img.MiB, Img.MiB, useAsync), "untouched");
            Img.AllBytes(0, await Img.Read(device, 2 * Img.MiB, 2 * Cs, useAsync), "zeroed unwritten range");
            if (kind != "raw")
            {
                // QEMU keeps allocated clusters allocated; over a backing file unallocated ones become zero clusters.
                Assert.Equal(BlockState.Data, (await Img.Status(device, 0, 512 * Kib, useAsync)).State);
                var expected = kind == "qed-backing" ? BlockState.Zero : BlockState.Unallocated;
                Assert.Equal(new BlockStatus(2 * Img.MiB, 2 * Cs, expected, -1), await Img.Status(device, 2 * Img.MiB, 2 * Cs, useAsync));
            }
        }
        // The unmapped 256 KiB became a hole in the file; the kept 256 KiB stayed allocated.
        Assert.InRange(freed, 256 * Kib / 512, 256 * Kib / 512 + 16);
        Dev.QemuReads(dir, path, kind, 0, 512 * Kib, 0);
        Dev.QemuReads(dir, path, kind, 512 * Kib, 100, 0x55);
        Dev.QemuReads(dir, path, kind, 512 * Kib + 100, 1000, 0);
        Dev.QemuReads(dir, path, kind, Img.MiB, Img.MiB, untouched);
        Dev.QemuReads(dir, path, kind, 2 * Img.MiB, 2 * Cs, 0);
        Dev.QemuCheckClean(dir, path, kind);
    }

    [Theory]
    [MemberData(nameof(Dev.KindsAndModes), MemberType = typeof(Dev))]
    public async Task Discard_FreesWholeClusters_NeverShowsBackingData(string kind, bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = Dev.Create(dir, kind, Size);
        byte untouched = Dev.Untouched(kind);
        long freed;
        await using (var device = await Dev.Open(path, kind, useAsync))
        {
            await Img.Write(device, 0, Img.Fill(Img.MiB, 0x55), useAsync);
            long before = Dev.AllocatedBlocks(path);
            await Dev.Discard(device, 100, 512 * Kib, useAsync);
            await Dev.Discard(device, 2 * Img.MiB, 256 * Kib, useAsync);
            freed = before - Dev.AllocatedBlocks(path);
        }
        if (kind == "raw")
        {
            // A raw file punches exactly the range (to file-system pages).
            Dev.QemuReads(dir, path, kind, 0, 100, 0x55);
            Dev.QemuReads(dir, path, kind, 4096, 512 * Kib - 4096, 0);
            Dev.QemuReads(dir, path, kind, 512 * Kib + 100, Img.MiB - 512 * Kib - 100, 0x55);
            Assert.InRange(freed, (512 * Kib - 4096) / 512, 512 * Kib / 512 + 16);
        }
        else
        {
            // QED frees whole clusters only: the partial first and last cluster keep their data.
            Dev.QemuReads(dir, path, kind, 0, Cs, 0x55);
            Dev.QemuReads(dir, path, kind, Cs, 512 * Kib - Cs, 0);
            Dev.QemuReads(dir, path, kind, 512 * Kib, Img.MiB - 512 * Kib, 0x55);
            Assert.InRange(freed, (512 * Kib - Cs) / 512, (512 * Kib - Cs) / 512 + 16);
        }
        // Discarding never-written space changes nothing, and never turns data into backing data.
        Dev.QemuReads(dir, path, kind, Img.MiB, 3 * Img.MiB, untouched);
        Dev.QemuCheckClean(dir, path, kind);
        await using var reader = await Dev.Open(path, kind, useAsync, readOnly: true);
        Assert.Equal(Interop.QemuOracle.ReadWindow(dir.Path, path, 0, Img.MiB, Dev.Format(kind)), await Img.Read(reader, 0, Img.MiB, useAsync));
    }

    [Theory]
    [MemberData(nameof(Dev.KindsAndModes), MemberType = typeof(Dev))]
    public async Task ReadOnlyDevice_RefusesEveryChange(string kind, bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = Dev.Create(dir, kind, Size);
        string digest = Tools.Sha256OfFile(path);
        await using (var device = await Dev.Open(path, kind, useAsync, readOnly: true))
        {
            await Assert.ThrowsAsync<QedReadOnlyException>(() => Dev.WriteZeroes(device, 0, Cs, WriteZeroesFlags.MayUnmap, useAsync));
            await Assert.ThrowsAsync<QedReadOnlyException>(() => Dev.Discard(device, 0, Cs, useAsync));
            await Assert.ThrowsAsync<QedReadOnlyException>(() => Dev.Resize(device, 2 * Size, useAsync));
            await Assert.ThrowsAsync<QedReadOnlyException>(() => Dev.Write(device, 0, new byte[512], WriteFlags.ForceUnitAccess, useAsync));
            if (device is QedImage image)
            {
                Assert.Throws<QedReadOnlyException>(() => image.Check(Check.RepairMode.All));
            }
        }
        Assert.Equal(digest, Tools.Sha256OfFile(path));
    }

    [Theory]
    [InlineData("qed", false, BlockDeviceCapabilities.Write | BlockDeviceCapabilities.ZeroFast | BlockDeviceCapabilities.Discard | BlockDeviceCapabilities.Grow | BlockDeviceCapabilities.Shrink | BlockDeviceCapabilities.Extents)]
    [InlineData("qed", true, BlockDeviceCapabilities.Extents)]
    [InlineData("raw", false, BlockDeviceCapabilities.Write | BlockDeviceCapabilities.ZeroFast | BlockDeviceCapabilities.Discard | BlockDeviceCapabilities.Grow | BlockDeviceCapabilities.Shrink | BlockDeviceCapabilities.Extents)]
    [InlineData("raw", true, BlockDeviceCapabilities.Extents)]
    public async Task Capabilities_SayWhatTheDeviceCanDo(string kind, bool readOnly, BlockDeviceCapabilities expected)
    {
        using var dir = new TempDirectory();
        string path = Dev.Create(dir, kind, Size);
        await using var device = await Dev.Open(path, kind, useAsync: false, readOnly);
        Assert.Equal(expected, device.Capabilities);
    }
}
