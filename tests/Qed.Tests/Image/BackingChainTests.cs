using Qed.Format;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>Backing files (QED-FORMAT.md §7): name resolution, missing files, loops, chains of mixed geometry.</summary>
public class BackingChainTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task RelativeName_ResolvesAgainstTheImagesDirectory(bool useAsync)
    {
        // The process's working directory is not the image's directory, so a name resolved against it would miss.
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.File("sub"));
        Assert.NotEqual(Path.GetFullPath(dir.File("sub")), Environment.CurrentDirectory);
        Img.RawFile(dir.File("sub/base.raw"), Img.MiB, 0x17);
        Img.Create(dir.File("sub/ov.qed"), Img.MiB, backing: "base.raw", backingFormat: "raw");
        await using var image = await Img.Open(dir.File("sub/ov.qed"), useAsync);
        Assert.Equal("base.raw", image.BackingFileName);
        Assert.Equal(Path.GetFullPath(dir.File("sub/base.raw")), Path.GetFullPath(image.BackingFilePath!));
        Assert.Equal("raw", image.BackingFormat);
        Assert.IsType<RawImage>(image.Backing);
        Img.AllBytes(0x17, await Img.Read(image, 0, Img.MiB, useAsync));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task RelativeImagePath_FromAnotherWorkingDirectory_StillFindsItsBacking(bool useAsync)
    {
        // The image is named relative to the process's working directory (which is elsewhere); its backing name is
        // relative to the image's own directory. Neither may be resolved against the other.
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.File("sub"));
        Img.RawFile(dir.File("sub/base.raw"), Img.MiB, 0x27);
        Img.Create(dir.File("sub/ov.qed"), Img.MiB, backing: "base.raw", backingFormat: "raw");
        string relative = Path.GetRelativePath(Environment.CurrentDirectory, dir.File("sub/ov.qed"));
        Assert.False(Path.IsPathRooted(relative));
        await using var image = await Img.Open(relative, useAsync);
        Assert.Equal(Path.GetFullPath(dir.File("sub/base.raw")), Path.GetFullPath(image.BackingFilePath!));
        Img.AllBytes(0x27, await Img.Read(image, 0, 4096, useAsync));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task RelativeNames_InAChain_ResolveAgainstEachImagesOwnDirectory(bool useAsync)
    {
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.File("a"));
        Directory.CreateDirectory(dir.File("b/c"));
        Img.RawFile(dir.File("a/base.raw"), Img.MiB, 0x0a);
        Img.Create(dir.File("b/c/mid.qed"), Img.MiB, backing: "../../a/base.raw", backingFormat: "raw");
        Img.Create(dir.File("b/top.qed"), Img.MiB, 4096, 2, backing: "c/mid.qed", backingFormat: "qed");
        using (var mid = QedImage.Open(dir.File("b/c/mid.qed")))
        {
            mid.Write(Img.Fill(4096, 0x0b), 65536);
        }
        await using var top = await Img.Open(dir.File("b/top.qed"), useAsync);
        var mid2 = Assert.IsType<QedImage>(top.Backing);
        Assert.IsType<RawImage>(mid2.Backing);
        Assert.Null(top.BackingFormat); // QED backing: no NO_PROBE bit, the format is probed
        Assert.Equal(QedFeatures.BackingFile, top.Header.Features);
        byte[] all = await Img.Read(top, 0, Img.MiB, useAsync);
        Img.AllBytes(0x0a, all.AsSpan(0, 65536));
        Img.AllBytes(0x0b, all.AsSpan(65536, 4096));
        Img.AllBytes(0x0a, all.AsSpan(65536 + 4096));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AbsoluteName_IsUsedAsIs(bool useAsync)
    {
        using var dir = new TempDirectory();
        using var other = new TempDirectory();
        Img.RawFile(other.File("abs.raw"), Img.MiB, 0x4a);
        Img.Create(dir.File("ov.qed"), Img.MiB, backing: other.File("abs.raw"), backingFormat: "raw");
        await using var image = await Img.Open(dir.File("ov.qed"), useAsync);
        Assert.Equal(other.File("abs.raw"), image.BackingFilePath);
        Img.AllBytes(0x4a, await Img.Read(image, 0, 4096, useAsync));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task MissingBackingFile_NamesTheResolvedPath(bool useAsync)
    {
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.File("sub"));
        Img.Create(dir.File("sub/ov.qed"), Img.MiB, backing: "gone.raw", backingFormat: "raw");
        string before = Tools.Sha256OfFile(dir.File("sub/ov.qed"));
        var e = await Assert.ThrowsAsync<QedBackingFileException>(() => Img.Open(dir.File("sub/ov.qed"), useAsync));
        Assert.StartsWith("Could not open backing file: Could not open '", e.Message, StringComparison.Ordinal);
        Assert.Contains(Path.Combine(dir.File("sub"), "gone.raw"), e.Message, StringComparison.Ordinal);
        Assert.Contains("No such file or directory", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Tools.Sha256OfFile(dir.File("sub/ov.qed")));

        // Without the chain the image opens (for info / rebase -u).
        await using var image = await Img.Open(dir.File("sub/ov.qed"), useAsync, options: new ImageOpenOptions { NoBacking = true });
        Assert.Null(image.Backing);
        Assert.Equal("gone.raw", image.BackingFileName);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task MissingFileDeepInTheChain_IsReported(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.Create(dir.File("mid.qed"), Img.MiB, backing: "base.qed", backingFormat: "qed");
        Img.Create(dir.File("top.qed"), Img.MiB, backing: "mid.qed", backingFormat: "qed");
        var e = await Assert.ThrowsAsync<QedBackingFileException>(() => Img.Open(dir.File("top.qed"), useAsync));
        Assert.Contains(dir.File("base.qed"), e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SelfReference_IsAnInfiniteLoop(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("self.qed");
        Img.Create(path, Img.MiB, backing: "self.qed", backingFormat: "qed");
        var e = await Img.WithTimeout(() => Assert.ThrowsAsync<QedBackingFileException>(() => Img.Open(path, useAsync)));
        Assert.Equal($"Backing file '{path}' creates an infinite loop.", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SelfReference_ThroughADifferentSpelling_IsAnInfiniteLoop(bool useAsync)
    {
        using var dir = new TempDirectory();
        Directory.CreateDirectory(dir.File("d"));
        string path = dir.File("d/self.qed");
        Img.Create(path, Img.MiB, backing: "../d/./self.qed", backingFormat: "qed");
        var e = await Img.WithTimeout(() => Assert.ThrowsAsync<QedBackingFileException>(() => Img.Open(path, useAsync)));
        Assert.StartsWith("Backing file '", e.Message, StringComparison.Ordinal);
        Assert.EndsWith("' creates an infinite loop.", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task TwoImageCycle_IsAnInfiniteLoop(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.Create(dir.File("a.qed"), Img.MiB, backing: "b.qed", backingFormat: "qed");
        Img.Create(dir.File("b.qed"), Img.MiB, backing: "a.qed", backingFormat: "qed");
        var e = await Img.WithTimeout(() => Assert.ThrowsAsync<QedBackingFileException>(() => Img.Open(dir.File("a.qed"), useAsync)));
        Assert.Equal($"Backing file '{dir.File("a.qed")}' creates an infinite loop.", e.Message);
        var e2 = await Img.WithTimeout(() => Assert.ThrowsAsync<QedBackingFileException>(() => Img.Open(dir.File("b.qed"), useAsync)));
        Assert.Equal($"Backing file '{dir.File("b.qed")}' creates an infinite loop.", e2.Message);
    }

    [Fact]
    public void SameFileTwiceWithoutACycle_IsNotALoop()
    {
        // Two overlays of one base are fine (they are separate chains).
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("base.raw"), Img.MiB, 1);
        Img.Create(dir.File("x.qed"), Img.MiB, backing: "base.raw", backingFormat: "raw");
        Img.Create(dir.File("y.qed"), Img.MiB, backing: "base.raw", backingFormat: "raw");
        using var x = QedImage.Open(dir.File("x.qed"));
        using var y = QedImage.Open(dir.File("y.qed"));
        x.Write(Img.Fill(512, 2), 0);
        Assert.Equal(1, Img.ReadSync(y, 0, 1)[0]);
    }

    [Fact]
    public void ChainDeeperThanTheLimit_IsRefused()
    {
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("l0.img"), Img.MiB, 0);
        for (int i = 1; i <= 5; i++)
        {
            Img.Create(dir.File($"l{i}.img"), Img.MiB, backing: $"l{i - 1}.img", backingFormat: i == 1 ? "raw" : "qed");
        }
        using (var ok = QedImage.Open(dir.File("l5.img"), new ImageOpenOptions { MaxBackingDepth = 5 }))
        {
            Assert.NotNull(ok.Backing);
        }
        Assert.Throws<QedBackingFileException>(() => QedImage.Open(dir.File("l5.img"), new ImageOpenOptions { MaxBackingDepth = 4 }));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task BackingChain_IsOpenedReadOnly(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.Create(dir.File("base.qed"), Img.MiB);
        Tools.PokeU64(dir.File("base.qed"), 32, 0x10); // an autoclear bit a writable open would clear
        string before = Tools.Sha256OfFile(dir.File("base.qed"));
        Img.Create(dir.File("top.qed"), Img.MiB, backing: "base.qed", backingFormat: "qed");
        await using (var top = await Img.Open(dir.File("top.qed"), useAsync))
        {
            Assert.True(top.Backing!.IsReadOnly);
            await Img.Write(top, 100, 100, 0x01, useAsync);
        }
        Assert.Equal(before, Tools.Sha256OfFile(dir.File("base.qed")));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F08_ThreeLevelMixedGeometryChain_MatchesQemusReaderView(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.Create(dir.File("f08-base.qed"), 2 * Img.MiB);
        await using (var image = await Img.Open(dir.File("f08-base.qed"), useAsync))
        {
            await Img.Write(image, 0, Img.MiB, 0xa0, useAsync);
        }
        Img.Create(dir.File("f08-mid.qed"), 2 * Img.MiB, 4096, 4, backing: "f08-base.qed", backingFormat: "qed");
        await using (var image = await Img.Open(dir.File("f08-mid.qed"), useAsync))
        {
            await Img.Write(image, 64 * 1024, 8192, 0xa1, useAsync);
            await Img.WriteZeroes(image, 128 * 1024, 64 * 1024, useAsync);
        }
        Img.Create(dir.File("f08-top.qed"), 2 * Img.MiB, 16384, 2, backing: "f08-mid.qed", backingFormat: "qed");
        await using (var image = await Img.Open(dir.File("f08-top.qed"), useAsync))
        {
            await Img.Write(image, 68 * 1024, 1024, 0xa2, useAsync);
            await Img.Write(image, 1536 * 1024, 16 * 1024, 0xa3, useAsync);
        }
        Assert.Equal(QedFeatures.BackingFile, Img.FileHeader(dir.File("f08-top.qed")).Features);
        await using (var top = await Img.Open(dir.File("f08-top.qed"), useAsync, readOnly: true))
        {
            byte[] all = await Img.Read(top, 0, 2 * Img.MiB, useAsync);
            const int K = 1024;
            Img.AllBytes(0xa0, all.AsSpan(0, 64 * K), "[0,64K)");
            Img.AllBytes(0xa1, all.AsSpan(64 * K, 4 * K), "[64K,68K)");
            Img.AllBytes(0xa2, all.AsSpan(68 * K, 1 * K), "[68K,69K)");
            Img.AllBytes(0xa1, all.AsSpan(69 * K, 3 * K), "[69K,72K)");
            Img.AllBytes(0xa0, all.AsSpan(72 * K, 56 * K), "[72K,128K)");
            Img.AllBytes(0, all.AsSpan(128 * K, 64 * K), "[128K,192K) zero clusters in mid");
            Img.AllBytes(0xa0, all.AsSpan(192 * K, Img.MiB - 192 * K), "[192K,1M)");
            Img.AllBytes(0, all.AsSpan(Img.MiB, 512 * K), "[1M,1.5M)");
            Img.AllBytes(0xa3, all.AsSpan(1536 * K, 16 * K), "[1.5M,+16K)");
            Img.AllBytes(0, all.AsSpan(1552 * K), "to the end");
            Assert.Equal("d09687aabecfa9ee467bd46bf4b74bd740d4e3741b20e3214b39dee421e3db15", DeviceDigest.Sha256(top));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task BackingLargerThanTheOverlay_IsReadOnlyUpToTheOverlaysSize(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("big.raw"), 4 * Img.MiB, 0x42);
        Img.Create(dir.File("small.qed"), Img.MiB + 512, 4096, 1, backing: "big.raw", backingFormat: "raw");
        await using var image = await Img.Open(dir.File("small.qed"), useAsync);
        Assert.Equal(Img.MiB + 512, image.Size);
        Img.AllBytes(0x42, await Img.Read(image, 0, Img.MiB + 512, useAsync));
        // An allocating write in the last, partial cluster copies up what lies below it.
        await Img.Write(image, Img.MiB, 100, 0x43, useAsync);
        byte[] tail = await Img.Read(image, Img.MiB, 512, useAsync);
        Img.AllBytes(0x43, tail.AsSpan(0, 100));
        Img.AllBytes(0x42, tail.AsSpan(100));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task QcowBacking_IsRefusedWithAClearError(bool useAsync)
    {
        using var dir = new TempDirectory();
        byte[] qcow = new byte[4096];
        "QFI"u8.CopyTo(qcow);
        qcow[3] = 0xfb;
        File.WriteAllBytes(dir.File("b.qcow2"), qcow);
        Img.Create(dir.File("o.qed"), Img.MiB, backing: "b.qcow2", backingFormat: "qcow2");
        var e = await Assert.ThrowsAsync<QedBackingFileException>(() => Img.Open(dir.File("o.qed"), useAsync));
        Assert.Contains("qcow2", e.Message, StringComparison.Ordinal);
    }
}
