using Qed.Check;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>Leak reclaiming never cuts clusters that a corrupt entry still points into (fixture F17 of QED-FORMAT.md §13.5).</summary>
public class RepairSafetyTests
{
    [Fact]
    public void Trailing_leaks_are_kept_while_an_invalid_entry_remains()
    {
        using var dir = new TempDirectory();
        string path = dir.File("f17.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", path, "16M");
        Tools.QemuIo(dir.Path, "qed", path, "write -P 0x16 0 64k", "write -P 0x17 64k 64k");
        Tools.PokeU64(path, 0x60008, 0xa0200); // L2[1] points into the last cluster, unaligned
        long length = new FileInfo(path).Length;

        using (var image = QedImage.Open(path, new QedOpenOptions { SkipCheckOnOpen = true }))
        {
            var result = image.Check(RepairMode.Leaks);
            Assert.Equal(1, result.Corruptions);
            Assert.Equal(0, result.LeaksFixed);
        }
        Assert.Equal(length, new FileInfo(path).Length);

        using (var image = QedImage.Open(path, new QedOpenOptions { SkipCheckOnOpen = true }))
        {
            // -r all zeroes the entry first; then nothing points into the cluster and it can go.
            var result = image.Check(RepairMode.All);
            Assert.Equal(1, result.CorruptionsFixed);
            Assert.Equal(1, result.LeaksFixed);
            Assert.Equal(0, result.Corruptions);
        }
        Assert.Equal(0xa0000, new FileInfo(path).Length);
    }
}
