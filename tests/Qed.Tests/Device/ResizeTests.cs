using System.Text.Json;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Device;

/// <summary>Resize: raw both ways, QED growing up to what its L1 table addresses (header rewritten at once); QED shrinking is in <see cref="Qed.Tests.Image.QedShrinkTests"/>.</summary>
public class ResizeTests
{
    private static long QemuVirtualSize(TempDirectory dir, string path, string format)
    {
        var info = Tools.QemuImg(dir.Path, "info", "-f", format, "--output=json", path);
        using var json = JsonDocument.Parse(info.StdOut);
        return json.RootElement.GetProperty("virtual-size").GetInt64();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Raw_GrowsAndShrinks(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("r.raw");
        Img.RawFile(path, Img.MiB, 0x11);
        await using (var device = await Dev.Open(path, "raw", useAsync))
        {
            await Dev.Resize(device, 3 * Img.MiB, useAsync);
            Assert.Equal(3 * Img.MiB, device.Size);
            Assert.Equal(3 * Img.MiB, Img.FileLength(path));
            Img.AllBytes(0, await Img.Read(device, Img.MiB, 2 * Img.MiB, useAsync), "grown space");
            await Img.Write(device, 3 * Img.MiB - 4096, Img.Fill(4096, 0x22), useAsync);

            await Dev.Resize(device, 512 * 1024 + 512, useAsync);
            Assert.Equal(512 * 1024 + 512, device.Size);
            Assert.Equal(512 * 1024 + 512, Img.FileLength(path));
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Img.Read(device, 512 * 1024, 1024, useAsync));
        }
        Assert.Equal(512 * 1024 + 512, QemuVirtualSize(dir, path, "raw"));
        Dev.QemuReads(dir, path, "raw", 0, 512 * 1024 + 512, 0x11);
    }

    [Theory]
    [InlineData("qed", false)]
    [InlineData("qed", true)]
    [InlineData("qed-backing", false)]
    [InlineData("qed-backing", true)]
    public async Task Qed_Grows_HeaderAtOnce_NewSpaceReadsAsBelow(string kind, bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = Dev.Create(dir, kind, Img.MiB);
        long grown = 3 * Img.MiB + 512;
        await using (var device = await Dev.Open(path, kind, useAsync))
        {
            await Img.Write(device, Img.MiB - 4096, Img.Fill(4096, 0x11), useAsync);
            await Dev.Resize(device, grown, useAsync);
            Assert.Equal(grown, device.Size);
            // Durable before the call returns: the header on disk already says so.
            Assert.Equal((ulong)grown, Img.FileHeader(path).ImageSize);
            // Past the backing file's end there is nothing to show: zeros.
            Img.AllBytes(0, await Img.Read(device, Img.MiB, (int)(grown - Img.MiB), useAsync), "grown space");
            await Img.Write(device, grown - 4096, Img.Fill(4096, 0x22), useAsync);
        }
        Assert.Equal(grown, QemuVirtualSize(dir, path, "qed"));
        Dev.QemuReads(dir, path, kind, Img.MiB - 4096, 4096, 0x11);
        Dev.QemuReads(dir, path, kind, Img.MiB, grown - Img.MiB - 4096, 0);
        Dev.QemuReads(dir, path, kind, grown - 4096, 4096, 0x22);
        Dev.QemuCheckClean(dir, path, kind);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Qed_GrowsToWhatTheL1Addresses_NoFurther(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("small.qed");
        // 4 KiB clusters, two-cluster tables (QEMU cannot open one-cluster tables): 1024 entries each, so
        // 1024 * 1024 * 4096 bytes = 4 GiB at most, ts² · cs³ / 64.
        Img.Create(path, Img.MiB, clusterSize: 4096, tableSize: 2);
        const long max = 4L << 30;
        await using (var device = await Dev.Open(path, "qed", useAsync))
        {
            Assert.Equal(max, ((QedImage)device).Geometry.MaxImageSize);
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Dev.Resize(device, max + 512, useAsync));
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Dev.Resize(device, 2 * Img.MiB + 1, useAsync));
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Dev.Resize(device, -512, useAsync));
            await Dev.Resize(device, max, useAsync);
            Assert.Equal(max, device.Size);
            await Img.Write(device, max - 512, Img.Fill(512, 0x33), useAsync);
            await Dev.Resize(device, max, useAsync); // the same size: nothing to do
        }
        Assert.Equal(max, QemuVirtualSize(dir, path, "qed"));
        Dev.QemuReads(dir, path, "qed", max - 512, 512, 0x33);
        Dev.QemuCheckClean(dir, path, "qed");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_overlay_opened_without_its_backing_file_refuses_to_grow_but_shrinks(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = Dev.Create(dir, "qed-backing", Img.MiB);
        string before = Tools.Sha256OfFile(path);
        await using (var device = await Img.Open(path, useAsync, options: new ImageOpenOptions { NoBacking = true }))
        {
            // Without the backing file there is no telling where the grown area would show its data.
            await Assert.ThrowsAsync<QedBackingFileException>(() => Dev.Resize(device, 2 * Img.MiB, useAsync));
            Assert.Equal(Img.MiB, device.Size);
            await Dev.Resize(device, Img.MiB / 2, useAsync);
        }
        Assert.NotEqual(before, Tools.Sha256OfFile(path));
        Assert.Equal((ulong)(Img.MiB / 2), Img.FileHeader(path).ImageSize);
        Dev.QemuReads(dir, path, "qed-backing", 0, Img.MiB / 2, 0xb0);
        Dev.QemuCheckClean(dir, path, "qed-backing");
    }
}
