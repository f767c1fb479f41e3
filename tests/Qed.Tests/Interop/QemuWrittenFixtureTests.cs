using System.Text;
using Qed.Format;
using Qed.Tests.Infrastructure;
using static Qed.Tests.Interop.Op;

namespace Qed.Tests.Interop;

/// <summary>
/// The fixtures of QED-FORMAT.md §13, built by qemu-img/qemu-io exactly as the recipes say, read by our engine.
/// Each test checks the layout facts the recipe states (to be sure QEMU built what the spec describes), then
/// that our whole-disk read, sync and async, equals <c>qemu-img convert</c>'s bytes and the recipe's digest,
/// and that our allocation status agrees with <c>qemu-img map</c>.
/// </summary>
public sealed class QemuWrittenFixtureTests
{
    private static readonly ImageWriter s_qemu = ImageWriter.Qemu;

    [Fact]
    public void F01_EmptyDefaultImage()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F01(s_qemu, tmp.Path);
        Assert.Equal(0x50000, OnDisk.Length(tmp.File(image)));
        var check = QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal(1024, check.TotalClusters);
        Assert.Equal(0, check.AllocatedClusters);
        Assert.Equal(Fixtures.Digest.F01, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
    }

    [Fact]
    public void F02_FourKiBClustersTableSizeTwo()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F02(s_qemu, tmp.Path);
        string file = tmp.File(image);
        Assert.Equal(0x1000UL, OnDisk.Header(file).L1TableOffset);
        Assert.Equal(0x4000UL, OnDisk.L1(file, 0));
        Assert.Equal(0x3000UL, OnDisk.L2(file, 0, 0));
        Assert.Equal(0x6000UL, OnDisk.L2(file, 0, 1));
        Assert.Equal(0x7000UL, OnDisk.L2(file, 0, 256));
        Assert.Equal(0x8000UL, OnDisk.L2(file, 0, 257));
        Assert.Equal(0x9000UL, OnDisk.L2(file, 0, 258));
        Assert.Equal(0xb000UL, OnDisk.L1(file, 3));
        Assert.Equal(0xa000UL, OnDisk.L2(file, 3, 1023));
        Assert.Equal(53248, OnDisk.Length(file));
        var check = QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal((6, 4096, 1), (check.AllocatedClusters, check.TotalClusters, check.FragmentedClusters));
        Assert.Equal(Fixtures.Digest.F02, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
    }

    [Fact]
    public void F03_TableSizeSixteen()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F03(s_qemu, tmp.Path);
        string file = tmp.File(image);
        Assert.Equal(0x120000UL, OnDisk.L1(file, 0));
        Assert.Equal(0x110000UL, OnDisk.L2(file, 0, 0));
        Assert.Equal(0x220000UL, OnDisk.L2(file, 0, 8192));
        Assert.Equal(0x230000UL, OnDisk.L2(file, 0, 8193));
        var check = QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal((3, 1), (check.AllocatedClusters, check.FragmentedClusters));
        Assert.Equal(Fixtures.Digest.F03, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
    }

    [Fact]
    public void F04_OneMiBClusters()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F04(s_qemu, tmp.Path);
        string file = tmp.File(image);
        Assert.Equal(0x100000UL, OnDisk.Header(file).L1TableOffset);
        Assert.Equal(0x400000UL, OnDisk.L1(file, 0));
        Assert.Equal(0x300000UL, OnDisk.L2(file, 0, 3));
        Assert.Equal(6 * M, OnDisk.Length(file));
        var check = QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal((1, 64), (check.AllocatedClusters, check.TotalClusters));
        Assert.Equal(Fixtures.Digest.F04, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
    }

    [Fact]
    public void F05_SeveralL2Tables()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F05(s_qemu, tmp.Path);
        string file = tmp.File(image);
        Assert.Equal(0x5000UL, OnDisk.L1(file, 0));
        Assert.Equal(0x8000UL, OnDisk.L1(file, 1));
        Assert.Equal(0xb000UL, OnDisk.L1(file, 3));
        Assert.Equal(0xe000UL, OnDisk.L1(file, 15));
        Assert.Equal(0x10000UL, OnDisk.L2(file, 0, 1023));
        Assert.Equal(0x11000UL, OnDisk.L2(file, 1, 0));
        var check = QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal((7, 2), (check.AllocatedClusters, check.FragmentedClusters));
        Assert.Equal(Fixtures.Digest.F05, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
    }

    [Fact]
    public void F07_CopyOnWriteOverRaw()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F07(s_qemu, tmp.Path);
        string file = tmp.File(image);
        var header = OnDisk.Header(file);
        Assert.Equal(QedFeatures.BackingFile | QedFeatures.BackingFormatNoProbe, header.Features);
        Assert.Equal((0x40u, 12u), (header.BackingFilenameOffset, header.BackingFilenameSize));
        Assert.Equal(0x50000UL, OnDisk.L2(file, 0));
        Assert.Equal(0xa0000UL, OnDisk.L2(file, 2 * 64 * K));
        Assert.Equal(0xb0000UL, OnDisk.L2(file, 16 * 64 * K));
        var check = QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal((3, 64), (check.AllocatedClusters, check.TotalClusters));
        Assert.Equal(Fixtures.Digest.F07, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);

        using var device = InteropAssert.OpenReadOnly(file);
        Assert.Equal("f07-base.raw", device.BackingFileName);
        Assert.Equal("raw", device.BackingFormat);
    }

    [Fact]
    public void F08_ThreeLevelChainMixedGeometry()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F08(s_qemu, tmp.Path);
        Assert.Equal(QedFeatures.BackingFile, OnDisk.Header(tmp.File(image)).Features);
        var check = QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal((2, 128, 1), (check.AllocatedClusters, check.TotalClusters, check.FragmentedClusters));
        Assert.Equal(Fixtures.Digest.F08, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
        StatusAssert.LikeQemuMap(tmp.Path, "f08-mid.qed");

        // The zero clusters of the middle layer hide the base's 0xa0 (QED-FORMAT.md §7, §13.2).
        using var device = InteropAssert.OpenReadOnly(tmp.File(image));
        var model = new DiskModel(2 * M).Apply([W(0xa0, 0, 1 * M), W(0xa1, 64 * K, 8 * K), Z(128 * K, 64 * K), W(0xa2, 68 * K, 1 * K), W(0xa3, 1536 * K, 16 * K)]);
        InteropAssert.ReadsLikeModel(device, model, "F08 top");
    }

    [Fact]
    public void F09_ZeroClustersOverBackingFile()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F09(s_qemu, tmp.Path);
        string file = tmp.File(image);
        Assert.Equal(1UL, OnDisk.L2(file, 0));
        Assert.Equal(1UL, OnDisk.L2(file, 64 * K));
        Assert.Equal(1UL, OnDisk.L2(file, 1 * M));
        Assert.Equal(0x90000UL, OnDisk.L2(file, 2 * M));
        var check = QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal(1, check.AllocatedClusters);
        Assert.Equal(Fixtures.Digest.F09, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
    }

    [Fact]
    public void F10_WriteZeroesOnAllocatedCluster()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F10(s_qemu, tmp.Path);
        Assert.Equal(0x50000UL, OnDisk.L2(tmp.File(image), 0));
        var check = QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal((1, 16), (check.AllocatedClusters, check.TotalClusters));
        Assert.Equal(Fixtures.Digest.F10, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
    }

    [Fact]
    public void F11_QemuWrittenPartialWriteIntoZeroClusterReadsWhatQemuWrote()
    {
        // QEMU copies backing data into the rest of the cluster (its bug, §5.5); the data is on disk now,
        // so a correct reader must return it: QEMU's digest, not the spec's.
        using var tmp = new TempDirectory();
        string image = Fixtures.F11(s_qemu, tmp.Path);
        QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal(Fixtures.Digest.F11Qemu, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
    }

    [Fact]
    public void F12_ShortUnalignedRawBacking()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F12(s_qemu, tmp.Path);
        Assert.Equal(1_000_000, OnDisk.Length(tmp.File("f12-short.raw")));
        var check = QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal((1, 64), (check.AllocatedClusters, check.TotalClusters));
        Assert.Equal(Fixtures.Digest.F12, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
    }

    [Fact]
    public void F24_TrailingPartialCluster()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F24(s_qemu, tmp.Path);
        Assert.Equal(656_360, OnDisk.Length(tmp.File(image)));
        QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal(Fixtures.Digest.F24, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
    }

    [Fact]
    public void F25_HeaderSizeTwo()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F25(s_qemu, tmp.Path);
        string file = tmp.File(image);
        Assert.Equal(0x70000UL, OnDisk.L1(file, 0));
        Assert.Equal(0x60000UL, OnDisk.L2(file, 0));
        var check = QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal((1, 256), (check.AllocatedClusters, check.TotalClusters));
        Assert.Equal(Fixtures.Digest.F25, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
    }

    [Fact]
    public void F28_QemuOverAllocationIsReadAsOnDisk()
    {
        // QEMU's over-allocation bug (§5.3) put a pointer to a never-written cluster in L2[4096]; reading the
        // file must show that damage (zeros at [16M, 16M+4K)), i.e. QEMU's digest.
        using var tmp = new TempDirectory();
        string image = Fixtures.F28(s_qemu, tmp.Path);
        string file = tmp.File(image);
        Assert.Equal(0x1011000UL, OnDisk.L2(file, 16 * M));
        Assert.Equal(0x1012000UL, OnDisk.L1(file, 0));
        Assert.Equal(16_916_480, OnDisk.Length(file));
        var check = QemuOracle.Check(tmp.Path, image);
        Assert.Equal((3, 1L, 0L, 4097L), (check.ExitCode, check.Leaks, check.Corruptions, check.AllocatedClusters));
        QemuOracle.AssertOurCheckAgrees(tmp.Path, image, check);
        Assert.Equal(Fixtures.Digest.F28Qemu, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
    }

    [Theory]
    [InlineData(1000, 1024, Fixtures.Digest.F30Size1000)]
    [InlineData(0, 0, Fixtures.Digest.F30Size0)]
    public void F30_OddSizes(long requested, long imageSize, string digest)
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F30(s_qemu, tmp.Path, requested);
        Assert.Equal((ulong)imageSize, OnDisk.Header(tmp.File(image)).ImageSize);
        var check = QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal(imageSize == 0 ? 0 : 1, check.TotalClusters);
        Assert.Equal(digest, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        using var device = InteropAssert.OpenReadOnly(tmp.File(image));
        Assert.Equal(imageSize, device.Size);
    }

    [Fact]
    public void F31_GrownImage()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F31(s_qemu, tmp.Path);
        Assert.Equal((ulong)(3 * M), OnDisk.Header(tmp.File(image)).ImageSize);
        var check = QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal((16, 48), (check.AllocatedClusters, check.TotalClusters));
        Assert.Equal(Fixtures.Digest.F31, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
    }

    [Fact]
    public void F32_BackingRemovedNameBytesIgnored()
    {
        using var tmp = new TempDirectory();
        string image = Fixtures.F32(s_qemu, tmp.Path);
        string file = tmp.File(image);
        var header = OnDisk.Header(file);
        Assert.Equal((QedFeatures.None, 64u, 0u), (header.Features, header.BackingFilenameOffset, header.BackingFilenameSize));
        byte[] stale = new byte[12];
        using (var stream = File.OpenRead(file))
        {
            stream.Seek(0x40, SeekOrigin.Begin);
            stream.ReadExactly(stale);
        }
        Assert.Equal("f07-base.raw", Encoding.ASCII.GetString(stale));
        QemuOracle.AssertClean(tmp.Path, image);
        Assert.Equal(Fixtures.Digest.F32, InteropAssert.ReadsLikeQemu(tmp.Path, image));
        StatusAssert.LikeQemuMap(tmp.Path, image);
        using var device = InteropAssert.OpenReadOnly(file);
        Assert.Null(device.Backing);
        Assert.Null(device.BackingFileName);
    }
}
