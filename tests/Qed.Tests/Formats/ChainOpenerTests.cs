using Qed.Formats;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Formats;

/// <summary>Backing chains opened through the registry: loops, the depth limit, and the order (nothing is written until every file of the chain is open).</summary>
public class ChainOpenerTests
{
    private static async Task<BlockDevice> Open(string path, bool useAsync, ImageOpenOptions? options = null) =>
        useAsync ? await DiskImage.OpenAsync(path, options: options) : DiskImage.Open(path, options: options);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ThreeImageLoop_IsNamedAtTheFileThatClosesIt(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.Create(dir.File("a.qed"), Img.MiB, backing: "b.qed", backingFormat: "qed");
        Img.Create(dir.File("b.qed"), Img.MiB, backing: "c.qed", backingFormat: "qed");
        Img.Create(dir.File("c.qed"), Img.MiB, backing: "a.qed", backingFormat: "qed");
        var e = await Img.WithTimeout(() => Assert.ThrowsAsync<QedBackingFileException>(() => Open(dir.File("a.qed"), useAsync)));
        Assert.Equal($"Backing file '{dir.File("a.qed")}' creates an infinite loop.", e.Message);
        // Nothing stays open or locked: every file of the loop opens writable alone.
        foreach (string name in new[] { "a.qed", "b.qed", "c.qed" })
        {
            using var alone = DiskImage.Open(dir.File(name), options: new ImageOpenOptions { NoBacking = true });
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DepthLimit_CountsBackingFiles(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("l0.img"), Img.MiB, 0x5a);
        for (int i = 1; i <= 4; i++)
        {
            Img.Create(dir.File($"l{i}.img"), Img.MiB, backing: $"l{i - 1}.img", backingFormat: i == 1 ? "raw" : "qed");
        }
        await using (var ok = await Open(dir.File("l4.img"), useAsync, new ImageOpenOptions { MaxBackingDepth = 4 }))
        {
            int depth = 0;
            for (var device = ok.Backing; device is not null; device = device.Backing)
            {
                depth++;
            }
            Assert.Equal(4, depth);
            Assert.Equal(0x5a, (await Img.Read(ok, 0, 1, useAsync))[0]);
        }
        var e = await Assert.ThrowsAsync<QedBackingFileException>(() => Open(dir.File("l4.img"), useAsync, new ImageOpenOptions { MaxBackingDepth = 3 }));
        Assert.Equal($"Backing chain is deeper than 3 images at '{dir.File("l0.img")}'", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task BrokenBackingFile_FailsTheOpen_BeforeTheTopIsRepaired(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.Create(dir.File("base.qed"), Img.MiB);
        Tools.Poke(dir.File("base.qed"), 8, 3, 0, 0, 0); // table size 3
        string top = dir.File("top.qed");
        Img.Create(top, Img.MiB, backing: "base.qed", backingFormat: "qed");
        Tools.Poke(top, 16, 0x03); // backing file, need check: a writable open would repair and rewrite the header
        Tools.PokeU64(top, 32, 0x01); // an unknown auto-clear bit it would clear
        string before = Tools.Sha256OfFile(top);

        var e = await Assert.ThrowsAsync<QedBackingFileException>(() => Open(top, useAsync));
        Assert.StartsWith("Could not open backing file: QED table size is invalid", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Tools.Sha256OfFile(top));

        // With a good backing file the same open completes: the repair ran and the auto-clear bit is gone.
        File.Delete(dir.File("base.qed"));
        Img.Create(dir.File("base.qed"), Img.MiB);
        await using (var device = await Open(top, useAsync))
        {
            Assert.NotNull(device.Backing);
        }
        var header = Img.FileHeader(top);
        Assert.False(header.NeedsCheck);
        Assert.Equal(0UL, header.AutoclearFeatures);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task BackingFileInUse_FailsTheOpen_AndLeavesEveryFileAsItWas(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("base.raw"), Img.MiB, 1);
        Img.Create(dir.File("mid.qed"), Img.MiB, backing: "base.raw", backingFormat: "raw");
        string top = dir.File("top.qed");
        Img.Create(top, Img.MiB, backing: "mid.qed", backingFormat: "qed");
        Tools.Poke(top, 16, 0x03);
        string before = Tools.Sha256OfFile(top);
        using (var writer = DiskImage.Open(dir.File("mid.qed"), options: new ImageOpenOptions { NoBacking = true }))
        {
            var e = await Assert.ThrowsAsync<QedBackingFileException>(() => Open(top, useAsync));
            Assert.IsType<QedLockException>(e.InnerException);
            Assert.Equal(before, Tools.Sha256OfFile(top));
        }
        // The failed open released the top file's locks: it opens writable now.
        await using var device = await Open(top, useAsync);
        Assert.IsType<RawImage>(device.Backing!.Backing);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task FormatOpen_OpensTheChainThroughTheRegistry(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("base.raw"), Img.MiB, 0x33);
        Img.Create(dir.File("top.qed"), Img.MiB, backing: "base.raw", backingFormat: "raw");
        await using var device = useAsync ? await ImageFormats.Qed.OpenAsync(dir.File("top.qed")) : ImageFormats.Qed.Open(dir.File("top.qed"));
        Assert.Same(ImageFormats.Raw, ImageFormats.Of(device.Backing!));
        Assert.True(device.Backing!.IsReadOnly);
        Assert.Equal(0x33, (await Img.Read(device, 4096, 1, useAsync))[0]);
        // Opening as the wrong format fails with that format's message.
        var e = await Assert.ThrowsAnyAsync<QedException>(async () =>
        {
            await using var wrong = useAsync ? await ImageFormats.Qed.OpenAsync(dir.File("base.raw")) : ImageFormats.Qed.Open(dir.File("base.raw"));
        });
        Assert.StartsWith("Image not in QED format", e.Message, StringComparison.Ordinal);
    }
}
