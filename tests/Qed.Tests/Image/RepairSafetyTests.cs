using System.Security.Cryptography;
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

        using (var image = QedImage.Open(path, new ImageOpenOptions { SkipCheckOnOpen = true }))
        {
            var result = image.Check(RepairMode.Leaks);
            Assert.Equal(1, result.Corruptions);
            Assert.Equal(0, result.LeaksFixed);
        }
        Assert.Equal(length, new FileInfo(path).Length);

        using (var image = QedImage.Open(path, new ImageOpenOptions { SkipCheckOnOpen = true }))
        {
            // -r all zeroes the entry first; then nothing points into the cluster and it can go.
            var result = image.Check(RepairMode.All);
            Assert.Equal(1, result.CorruptionsFixed);
            Assert.Equal(1, result.LeaksFixed);
            Assert.Equal(0, result.Corruptions);
        }
        Assert.Equal(0xa0000, new FileInfo(path).Length);
    }

    [Fact]
    public void A_read_only_open_of_a_dirty_corrupt_image_works_and_changes_nothing()
    {
        using var dir = new TempDirectory();
        string path = dir.File("f16.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", path, "16M");
        Tools.QemuIo(dir.Path, "qed", path, "write -P 0x16 0 64k", "write -P 0x17 64k 64k");
        Tools.PokeU64(path, 0x60008, 0x10000000); // L2[1] beyond the end of the file
        Tools.Poke(path, 16, 0x02);                // need check
        byte[] before = SHA256.HashData(File.ReadAllBytes(path));

        using (var image = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true }))
        {
            Assert.True(image.Header.NeedsCheck);
            byte[] first = new byte[65536];
            image.Read(first, 0);
            Assert.All(first, b => Assert.Equal(0x16, b));
            Assert.Throws<QedCorruptionException>(() => image.Read(new byte[512], 65536));
            Assert.Equal(1, image.Check().Corruptions);
        }
        Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(path)));
    }
}
