using Qed.Format;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>NEED_CHECK (§5.7), unknown compat and autoclear bits (§1.3), and what writable and read-only opens do to the header.</summary>
public class HeaderFeatureTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task NeedCheck_IsOnDiskBeforeTheFirstAllocation_AndClearedAtClose(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("nc.qed");
        Img.Create(path, 16 * Img.MiB);
        var file = new ObservedFileAccessor(HandleFileAccessor.Open(path, readOnly: false));
        var seenAtDataWrite = new List<QedFeatures>();
        file.BeforeWrite = (offset, length) =>
        {
            if (offset >= 0x50000)
            {
                seenAtDataWrite.Add(Img.FileHeader(path).Features);
            }
        };
        await using (var image = await Img.OpenOver(file, useAsync))
        {
            Assert.False(image.Header.NeedsCheck);
            await Img.Write(image, 4096, 4096, 0x01, useAsync);
            Assert.True(image.Header.NeedsCheck);
            Assert.Equal(QedFeatures.NeedCheck, Img.FileHeader(path).Features);
            // Every data and table write of the allocation saw the bit on disk already.
            Assert.NotEmpty(seenAtDataWrite);
            Assert.All(seenAtDataWrite, f => Assert.Equal(QedFeatures.NeedCheck, f));

            // The bit was flushed before the first cluster was written (stricter than QEMU, §5.6).
            int headerWrite = file.Log.FindIndex(e => e.StartsWith("W 0 ", StringComparison.Ordinal));
            int firstData = file.Log.FindIndex(e => e.StartsWith("W 50000 ", StringComparison.Ordinal));
            Assert.True(headerWrite >= 0 && firstData > headerWrite, string.Join(", ", file.Log));
            Assert.Contains("F", file.Log.GetRange(headerWrite, firstData - headerWrite));

            // A second allocation does not write the header again.
            int headerWrites = file.Log.Count(e => e.StartsWith("W 0 ", StringComparison.Ordinal));
            await Img.Write(image, Img.MiB, 4096, 0x02, useAsync);
            Assert.Equal(headerWrites, file.Log.Count(e => e.StartsWith("W 0 ", StringComparison.Ordinal)));
        }
        Assert.Equal(QedFeatures.None, Img.FileHeader(path).Features);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task NeedCheck_HeaderUpdate_KeepsBytes64To511(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("keep.qed");
        Img.Create(path, 16 * Img.MiB);
        Tools.Poke(path, 100, "extension data"u8.ToArray());
        Tools.Poke(path, 511, 0x5a);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 0, 512, 0x01, useAsync);
        }
        Assert.Equal("extension data"u8.ToArray(), Img.FileBytes(path, 100, 14));
        Assert.Equal(0x5a, Img.FileBytes(path, 511, 1)[0]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task NeedCheck_IsNeverSetWithABackingFile(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("base.raw"), 4 * Img.MiB, 0xb0);
        string path = dir.File("ov.qed");
        Img.Create(path, 4 * Img.MiB, backing: "base.raw", backingFormat: "raw");
        var file = new ObservedFileAccessor(HandleFileAccessor.Open(path, readOnly: false));
        await using (var image = await Img.OpenOver(file, useAsync))
        {
            await Img.Write(image, 4096, 4096, 0x01, useAsync);
            await Img.Write(image, 3 * Img.MiB, 100_000, 0x02, useAsync);
            await Img.WriteZeroes(image, Img.MiB, 65536, useAsync);
            Assert.False(image.Header.NeedsCheck);
            Assert.Equal((QedFeatures)0x05, Img.FileHeader(path).Features);
        }
        Assert.DoesNotContain(file.Log, e => e.StartsWith("W 0 ", StringComparison.Ordinal));
        Assert.Equal((QedFeatures)0x05, Img.FileHeader(path).Features);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task NeedCheck_IsNotSetByInPlaceWritesOrReads(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("inplace.qed");
        Img.Create(path, 16 * Img.MiB);
        using (var image = QedImage.Open(path))
        {
            image.Write(Img.Fill(65536, 1), 0);
        }
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 100, 1000, 0x02, useAsync);
            await Img.Read(image, 0, 2 * Img.MiB, useAsync);
            await Img.WriteZeroes(image, 0, 65536, useAsync); // allocated: zeros written in place
            Assert.False(image.Header.NeedsCheck);
            Assert.Equal(QedFeatures.None, Img.FileHeader(path).Features);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task NeedCheck_FoundOnDisk_ReadOnlyOpenLeavesIt(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f13.qed");
        Img.Create(path, 16 * Img.MiB);
        using (var image = QedImage.Open(path))
        {
            image.Write(Img.Fill(4096, 0xf1), 0);
        }
        Tools.Poke(path, 16, 0x02);
        string before = Tools.Sha256OfFile(path);
        await using (var image = await Img.Open(path, useAsync, readOnly: true))
        {
            Assert.True(image.Header.NeedsCheck);
            Img.AllBytes(0xf1, await Img.Read(image, 0, 4096, useAsync));
        }
        Assert.Equal(before, Tools.Sha256OfFile(path));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task UnknownAutoclearBits_AreClearedByAWritableOpen_CompatBitsKept(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f27.qed");
        Img.Create(path, 16 * Img.MiB);
        Tools.PokeU64(path, 24, 0x3);
        Tools.PokeU64(path, 32, 0xff00);
        Tools.Poke(path, 200, "tail"u8.ToArray());
        await using (var image = await Img.Open(path, useAsync))
        {
            // Cleared on disk at open, before any request.
            var onDisk = Img.FileHeader(path);
            Assert.Equal(0UL, onDisk.AutoclearFeatures);
            Assert.Equal(0x3UL, onDisk.CompatFeatures);
            Assert.Equal(0UL, image.Header.AutoclearFeatures);
            Assert.Equal(0x3UL, image.Header.CompatFeatures);
            await Img.Write(image, 0, 4096, 0x27, useAsync);
        }
        var header = Img.FileHeader(path);
        Assert.Equal(0UL, header.AutoclearFeatures);
        Assert.Equal(0x3UL, header.CompatFeatures);
        Assert.Equal(QedFeatures.None, header.Features);
        Assert.Equal("tail"u8.ToArray(), Img.FileBytes(path, 200, 4));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task UnknownAutoclearBits_AreKeptByAReadOnlyOpen(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("ro27.qed");
        Img.Create(path, 16 * Img.MiB);
        Tools.PokeU64(path, 24, 0x1);
        Tools.PokeU64(path, 32, 0x1);
        string before = Tools.Sha256OfFile(path);
        await using (var image = await Img.Open(path, useAsync, readOnly: true))
        {
            Assert.Equal(1UL, image.Header.AutoclearFeatures);
            Assert.Equal(1UL, image.Header.CompatFeatures);
            Img.AllBytes(0, await Img.Read(image, 0, 16 * Img.MiB, useAsync));
        }
        Assert.Equal(before, Tools.Sha256OfFile(path));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ReadOnlySession_NeverWritesTheFile(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("base.raw"), Img.MiB, 0x10);
        string path = dir.File("ro.qed");
        Img.Create(path, 2 * Img.MiB, 4096, 2, backing: "base.raw", backingFormat: "raw");
        using (var image = QedImage.Open(path))
        {
            image.Write(Img.Fill(10_000, 0x20), 5000);
        }
        var file = new ObservedFileAccessor(HandleFileAccessor.Open(path, readOnly: true));
        await using (var image = await Img.OpenOver(file, useAsync))
        {
            byte[] all = await Img.Read(image, 0, 2 * Img.MiB, useAsync);
            Img.AllBytes(0x10, all.AsSpan(0, 5000));
            Img.AllBytes(0x20, all.AsSpan(5000, 10_000));
            Img.AllBytes(0x10, all.AsSpan(15_000, Img.MiB - 15_000));
            Img.AllBytes(0, all.AsSpan(Img.MiB));
            await Img.Flush(image, useAsync);
        }
        Assert.DoesNotContain(file.Log, e => e[0] is 'W' or 'F');
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task BackingBitWithEmptyName_MeansNoBackingFile(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("empty-name.qed");
        Img.Create(path, Img.MiB);
        Tools.PokeU64(path, 16, 0x05);
        Tools.Poke(path, 56, 64, 0, 0, 0, 0, 0, 0, 0);
        await using var image = await Img.Open(path, useAsync);
        Assert.Null(image.BackingFileName);
        Assert.Null(image.Backing);
        Assert.Null(image.BackingFormat);
        Img.AllBytes(0, await Img.Read(image, 0, Img.MiB, useAsync));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F32_StaleNameBytesWithoutTheBackingBit_AreIgnored(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f32.qed");
        Img.Create(path, Img.MiB);
        Tools.Poke(path, 64, "f07-base.raw"u8.ToArray());
        Tools.Poke(path, 56, 64, 0, 0, 0, 0, 0, 0, 0);
        await using var image = await Img.Open(path, useAsync);
        Assert.Null(image.BackingFileName);
        Assert.Null(image.Backing);
    }
}
