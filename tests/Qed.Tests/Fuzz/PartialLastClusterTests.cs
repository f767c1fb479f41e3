using Qed.Check;
using Qed.Image;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Fuzz;

/// <summary>
/// Found by the CLI fuzz: QEMU measures a file in whole 512-byte sectors, so a last cluster short by less than a sector
/// is inside the file for it (valid offset, read with zeros past the end, counted by check, allocation after it); one
/// short by a sector or more is not. We used the length rounded down to a cluster, called such an entry a corruption
/// (and <c>check -r all</c> zeroed it, losing its data), and allocated the next write over that very cluster, so two
/// entries shared it. qemu-img is the oracle for every case.
/// </summary>
public class PartialLastClusterTests
{
    private const int ClusterSize = 4096;
    /// <summary>Where the fixture's file ends: header, 2-cluster L1, data of guest cluster 0, 2-cluster L2 table.</summary>
    private const long FileEnd = 0x6000;
    /// <summary>File offset of the L2 entry of guest cluster 1.</summary>
    private const long SecondEntry = 0x4008;

    /// <summary>An image whose guest cluster 1 points at the cluster after the end of the file, of which <paramref name="tail"/> bytes (0x22) exist.</summary>
    private static string Make(TempDirectory dir, int tail)
    {
        string path = dir.File("p.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", "p.qed", "16M");
        Tools.QemuIo(dir.Path, "qed", "p.qed", "write -P 0x11 0 4k");
        Assert.Equal(FileEnd, new FileInfo(path).Length);
        Tools.PokeU64(path, SecondEntry, (ulong)FileEnd);
        Tools.Poke(path, FileEnd, Enumerable.Repeat((byte)0x22, tail).ToArray());
        return path;
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(FileEnd, FileEnd)]
    [InlineData(FileEnd + 1, FileEnd)]
    [InlineData(FileEnd + ClusterSize - 512, FileEnd)]
    [InlineData(FileEnd + ClusterSize - 511, FileEnd + ClusterSize)]
    [InlineData(long.MaxValue, long.MaxValue & ~(long)(ClusterSize - 1))]
    public void The_file_size_is_the_length_in_whole_sectors_rounded_down_to_a_cluster(long length, long expected) =>
        Assert.Equal(expected, Qed.Format.OffsetRules.FileSize(length, new Qed.Format.QedGeometry(ClusterSize, 2)));

    [Theory]
    [InlineData(ClusterSize - 511)]
    [InlineData(ClusterSize - 1)]
    public void A_cluster_short_by_less_than_a_sector_is_present_as_for_qemu(int tail)
    {
        using var dir = new TempDirectory();
        string path = Make(dir, tail);
        Assert.Equal(0, Tools.QemuImgRaw(dir.Path, "check", "-f", "qed", "p.qed").ExitCode);
        byte[] expected = new byte[ClusterSize];
        expected.AsSpan(0, tail).Fill(0x22);
        Assert.Equal(expected, QemuOracle.ReadWindow(dir.Path, "p.qed", ClusterSize, ClusterSize));

        using (var image = QedImage.Open(path))
        {
            var check = image.Check(RepairMode.All);
            Assert.True(check is { Corruptions: 0, CorruptionsFixed: 0, Leaks: 0, LeaksFixed: 0, AllocatedClusters: 2 }, check.ToString());
            byte[] read = new byte[ClusterSize];
            image.Read(read, ClusterSize);
            Assert.Equal(expected, read);
            // The next allocation goes after the partial cluster, as QEMU's does, never onto it.
            image.Write(Enumerable.Repeat((byte)0x33, ClusterSize).ToArray(), 2 * ClusterSize);
        }
        Assert.Equal((ulong)FileEnd, OnDisk.L2(path, ClusterSize));
        Assert.Equal((ulong)FileEnd + ClusterSize, OnDisk.L2(path, 2 * ClusterSize));
        Assert.Equal(0, Tools.QemuImgRaw(dir.Path, "check", "-f", "qed", "p.qed").ExitCode);
        Assert.Equal(expected, QemuOracle.ReadWindow(dir.Path, "p.qed", ClusterSize, ClusterSize));
    }

    [Theory]
    [InlineData(ClusterSize - 512)]
    [InlineData(1000)]
    public void A_cluster_short_by_a_sector_or_more_is_outside_the_file_as_for_qemu(int tail)
    {
        using var dir = new TempDirectory();
        string path = Make(dir, tail);
        var qemu = Tools.QemuImgRaw(dir.Path, "check", "-f", "qed", "--output=json", "p.qed");
        Assert.Equal(2, qemu.ExitCode);
        Assert.Contains("\"corruptions\": 1,", qemu.StdOut, StringComparison.Ordinal);
        using var image = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal(1, image.Check().Corruptions);
        Assert.Equal(FileEnd, image.AllocationEnd);
    }
}
