using System.Text;
using Qed.Format;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>Create: the byte layouts of QED-FORMAT.md §3.3 and the refusals of §2.2, §3.1 and §3.2.</summary>
public class QedCreateTests
{
    private static byte[] Hex(string dump)
    {
        var bytes = new List<byte>();
        foreach (string group in dump.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            bytes.AddRange(Convert.FromHexString(group));
        }
        return bytes.ToArray();
    }

    private static async Task Create(string path, QedCreateOptions options, bool useAsync)
    {
        if (useAsync)
        {
            await QedImage.CreateAsync(path, options);
        }
        else
        {
            QedImage.Create(path, options);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task LayoutA_Default10M(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("def.qed");
        await Create(path, new QedCreateOptions { Size = 10 * Img.MiB }, useAsync);

        byte[] file = File.ReadAllBytes(path);
        Assert.Equal(0x50000, file.Length);
        byte[] expected = Hex(
            "5145 4400 0000 0100 0400 0000 0100 0000 " +
            "0000 0000 0000 0000 0000 0000 0000 0000 " +
            "0000 0000 0000 0000 0000 0100 0000 0000 " +
            "0000 a000 0000 0000 0000 0000 0000 0000");
        Assert.Equal(expected, file[..64]);
        Img.AllBytes(0, file.AsSpan(64), "rest of header cluster and L1");

        var header = QedHeader.Parse(file);
        Assert.Equal(HeaderLayout.Magic, header.Magic);
        Assert.Equal(0x10000u, header.ClusterSize);
        Assert.Equal(4u, header.TableSize);
        Assert.Equal(1u, header.HeaderSize);
        Assert.Equal(QedFeatures.None, header.Features);
        Assert.Equal(0UL, header.CompatFeatures);
        Assert.Equal(0UL, header.AutoclearFeatures);
        Assert.Equal(0x10000UL, header.L1TableOffset);
        Assert.Equal(0xa00000UL, header.ImageSize);
        Assert.Equal(0u, header.BackingFilenameOffset);
        Assert.Equal(0u, header.BackingFilenameSize);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task LayoutB_4KTs2WithRawBacking(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("c4k.qed");
        await Create(path, new QedCreateOptions { Size = 8 * Img.MiB, ClusterSize = 4096, TableSize = 2, BackingFile = "base.raw", BackingFormat = "raw" }, useAsync);

        byte[] file = File.ReadAllBytes(path);
        Assert.Equal(0x3000, file.Length);
        byte[] expected = Hex(
            "5145 4400 0010 0000 0200 0000 0100 0000 " +
            "0500 0000 0000 0000 0000 0000 0000 0000 " +
            "0000 0000 0000 0000 0010 0000 0000 0000 " +
            "0000 8000 0000 0000 4000 0000 0800 0000 " +
            "6261 7365 2e72 6177");
        Assert.Equal(expected, file[..72]);
        Img.AllBytes(0, file.AsSpan(72), "rest of header cluster and L1");

        var header = QedHeader.Parse(file);
        Assert.Equal(QedFeatures.BackingFile | QedFeatures.BackingFormatNoProbe, header.Features);
        Assert.Equal(0x1000UL, header.L1TableOffset);
        Assert.Equal(0x800000UL, header.ImageSize);
        Assert.Equal(0x40u, header.BackingFilenameOffset);
        Assert.Equal(8u, header.BackingFilenameSize);
    }

    [Theory]
    [InlineData("qed")]
    [InlineData(null)]
    [InlineData("RAW")] // only exactly "raw" is recorded
    public void LayoutC_NonRawBackingFormat_SetsOnlyTheBackingBit(string? format)
    {
        using var dir = new TempDirectory();
        string path = dir.File("ov.qed");
        Img.Create(path, 10 * Img.MiB, backing: "def.qed", backingFormat: format);
        byte[] file = File.ReadAllBytes(path);
        Assert.Equal(0x50000, file.Length);
        var header = QedHeader.Parse(file);
        Assert.Equal(QedFeatures.BackingFile, header.Features);
        Assert.Equal(0x40u, header.BackingFilenameOffset);
        Assert.Equal(7u, header.BackingFilenameSize);
        Assert.Equal("def.qed"u8.ToArray(), file[0x40..0x47]);
        Assert.Equal(0, file[0x47]);
    }

    [Fact]
    public void BackingName_IsStoredVerbatimAsUtf8()
    {
        using var dir = new TempDirectory();
        string path = dir.File("ov.qed");
        const string name = "../dir with space/bäse:1.raw";
        Img.Create(path, Img.MiB, backing: name, backingFormat: "raw");
        byte[] utf8 = Encoding.UTF8.GetBytes(name);
        var header = Img.FileHeader(path);
        Assert.Equal((uint)utf8.Length, header.BackingFilenameSize);
        Assert.Equal(utf8, Img.FileBytes(path, 64, utf8.Length));
    }

    [Theory]
    [InlineData(4096, 1, 0x2000)]
    [InlineData(4096, 2, 0x3000)]
    [InlineData(65536, 4, 0x50000)]
    [InlineData(65536, 16, 0x110000)]
    [InlineData(1 << 20, 16, 17 << 20)]
    public void FileLength_IsHeaderClusterPlusL1(int cs, int ts, long length)
    {
        using var dir = new TempDirectory();
        string path = dir.File("g.qed");
        Img.Create(path, 16 * Img.MiB, cs, ts);
        Assert.Equal(length, Img.FileLength(path));
        var header = Img.FileHeader(path);
        Assert.Equal((ulong)cs, header.L1TableOffset);
        Assert.Equal((uint)cs, header.ClusterSize);
        Assert.Equal((uint)ts, header.TableSize);
    }

    [Theory]
    [InlineData(1000, 1024)]
    [InlineData(1, 512)]
    [InlineData(512, 512)]
    [InlineData(0, 0)]
    [InlineData(1234, 1536)]
    public void Size_IsRoundedUpToASector(long requested, long stored)
    {
        using var dir = new TempDirectory();
        string path = dir.File("s.qed");
        Img.Create(path, requested);
        Assert.Equal((ulong)stored, Img.FileHeader(path).ImageSize);
        using var image = QedImage.Open(path);
        Assert.Equal(stored, image.Size);
    }

    [Fact]
    public void Create_TruncatesAnExistingFile()
    {
        using var dir = new TempDirectory();
        string path = dir.File("old.qed");
        Img.RawFile(path, 3 * Img.MiB, 0x5a);
        Img.Create(path, Img.MiB);
        byte[] file = File.ReadAllBytes(path);
        Assert.Equal(0x50000, file.Length);
        Img.AllBytes(0, file.AsSpan(64));
    }

    [Fact]
    public async Task SyncAndAsync_WriteTheSameBytes()
    {
        using var dir = new TempDirectory();
        var options = new QedCreateOptions { Size = 3 * Img.MiB + 512, ClusterSize = 8192, TableSize = 8, BackingFile = "b.qed" };
        await Create(dir.File("a.qed"), options, useAsync: true);
        await Create(dir.File("s.qed"), options, useAsync: false);
        Assert.Equal(File.ReadAllBytes(dir.File("a.qed")), File.ReadAllBytes(dir.File("s.qed")));
    }

    [Fact]
    public void MaximumSize_64KTs4_Is64TiB()
    {
        using var dir = new TempDirectory();
        string path = dir.File("big.qed");
        Img.Create(path, 64L << 40);
        Assert.Equal(64UL << 40, Img.FileHeader(path).ImageSize);
        using var image = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal(64L << 40, image.Size);
    }

    [Theory]
    [InlineData(65536, 4, (64L << 40) + 512)] // "65T fails" (§2.2), already 512 bytes more does
    [InlineData(4096, 1, (1L << 30) + 512)]
    [InlineData(4096, 2, (4L << 30) + 1)] // rounded up to 4 GiB + 512
    public void SizeAboveTheMaximum_IsRefused(int cs, int ts, long size)
    {
        using var dir = new TempDirectory();
        string path = dir.File("too-big.qed");
        var e = Assert.Throws<QedFormatException>(() => Img.Create(path, size, cs, ts));
        Assert.StartsWith("QED image size must be a non-zero multiple of cluster size and less than", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(path));
    }

    [Theory]
    [InlineData(4 << 20, 4)]
    [InlineData(2 << 20, 16)]
    [InlineData(8 << 20, 2)]
    [InlineData(64 << 20, 16)]
    public void WrappedQemuMaximum_RefusesAnyNonZeroSize(int cs, int ts)
    {
        // QEMU computes the maximum of these geometries as 0 (the product wraps past 2^64): it would accept only size 0,
        // so a larger image would be unopenable by QEMU (`-o cluster_size=4M img 1M` fails in qemu-img).
        Assert.Equal(0UL, new QedGeometry(cs, ts).QemuMaxImageSize);
        using var dir = new TempDirectory();
        string path = dir.File("wrapped.qed");
        Assert.Throws<QedFormatException>(() => Img.Create(path, 1 << 20, cs, ts));
        Assert.Throws<QedFormatException>(() => Img.Create(path, 512, cs, ts));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void WrappedQemuMaximum_AcceptsSizeZero()
    {
        using var dir = new TempDirectory();
        string path = dir.File("zero.qed");
        Img.Create(path, 0, 4 << 20, 4);
        Assert.Equal(5L * (4 << 20), Img.FileLength(path));
        using var image = QedImage.Open(path);
        Assert.Equal(0, image.Size);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3000)]
    [InlineData(2048)]
    [InlineData(1 << 27)]
    [InlineData(-65536)]
    public void BadClusterSize_IsRefused(int cs)
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<QedFormatException>(() => Img.Create(dir.File("x.qed"), Img.MiB, cs, 4));
        Assert.StartsWith("QED cluster size must be within range [4096, 67108864] and power of 2", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("x.qed")));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(32)]
    [InlineData(-4)]
    public void BadTableSize_IsRefused(int ts)
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<QedFormatException>(() => Img.Create(dir.File("x.qed"), Img.MiB, 65536, ts));
        Assert.StartsWith("QED table size must be within range [1, 16] and power of 2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NegativeSize_IsRefused()
    {
        using var dir = new TempDirectory();
        Assert.Throws<QedFormatException>(() => Img.Create(dir.File("x.qed"), -512));
        Assert.Throws<QedFormatException>(() => Img.Create(dir.File("x.qed"), long.MaxValue));
    }

    [Fact]
    public void BackingNameOf4095Bytes_IsAccepted_4096IsRefused()
    {
        using var dir = new TempDirectory();
        string path = dir.File("n.qed");
        Img.Create(path, Img.MiB, backing: new string('n', 4095));
        Assert.Equal(4095u, Img.FileHeader(path).BackingFilenameSize);
        using (var image = QedImage.Open(path, new ImageOpenOptions { NoBacking = true }))
        {
            Assert.Equal(new string('n', 4095), image.BackingFileName);
        }

        string refused = dir.File("r.qed");
        var e = Assert.Throws<QedFormatException>(() => Img.Create(refused, Img.MiB, backing: new string('n', 4096)));
        Assert.Contains("4096", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(refused));
    }

    [Fact]
    public void BackingNameLongerThan4095Utf8Bytes_IsRefused_EvenWhenShorterInChars()
    {
        using var dir = new TempDirectory();
        // 2 048 'ä' = 4 096 UTF-8 bytes.
        Assert.Throws<QedFormatException>(() => Img.Create(dir.File("u.qed"), Img.MiB, backing: new string('ä', 2048)));
    }

    [Fact]
    public void BackingNameNotFittingTheHeaderCluster_IsRefused()
    {
        // QEMU accepts a 4 040-byte name with 4 KiB clusters, lets the L1 overwrite it and cannot open the result (§3.2).
        using var dir = new TempDirectory();
        string fits = dir.File("fits.qed");
        Img.Create(fits, Img.MiB, 4096, 2, backing: new string('f', 4096 - 64));
        using (var image = QedImage.Open(fits, new ImageOpenOptions { NoBacking = true }))
        {
            Assert.Equal(4032, image.BackingFileName!.Length);
        }

        string refused = dir.File("refused.qed");
        var e = Assert.Throws<QedFormatException>(() => Img.Create(refused, Img.MiB, 4096, 2, backing: new string('f', 4096 - 63)));
        Assert.Contains("4033", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(refused));
        Assert.Throws<QedFormatException>(() => Img.Create(refused, Img.MiB, 4096, 2, backing: new string('f', 4040)));
    }

    [Fact]
    public void RefusedCreate_LeavesAnExistingFileAlone()
    {
        using var dir = new TempDirectory();
        string path = dir.File("keep.qed");
        Img.Create(path, Img.MiB);
        string before = Tools.Sha256OfFile(path);
        Assert.Throws<QedFormatException>(() => Img.Create(path, 1L << 50));
        Assert.Throws<QedFormatException>(() => Img.Create(path, Img.MiB, 3000));
        Assert.Equal(before, Tools.Sha256OfFile(path));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task CreatedImage_OpensEmpty(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("e.qed");
        Img.Create(path, 4 * Img.MiB + 512, 4096, 1);
        await using var image = await Img.Open(path, useAsync);
        Assert.Equal(4 * Img.MiB + 512, image.Size);
        Assert.Equal(new QedGeometry(4096, 1), image.Geometry);
        Assert.Null(image.BackingFileName);
        Assert.Null(image.Backing);
        var status = await Img.Status(image, 0, image.Size, useAsync);
        Assert.Equal(BlockState.Unallocated, status.State);
        Img.AllBytes(0, await Img.Read(image, 0, (int)image.Size, useAsync));
        Assert.Equal(0x2000, image.AllocationEnd);
    }
}
