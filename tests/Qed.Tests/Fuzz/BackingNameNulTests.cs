using Qed.Image;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Fuzz;

/// <summary>
/// Found by the CLI fuzz: QEMU reads a backing file name as a C string, so it ends at the first NUL byte, and a name
/// that is empty up to there means no backing file. We refused every such image ("its name contains a NUL byte"),
/// though qemu-img opens, reads and checks it. qemu-img is the oracle.
/// </summary>
public class BackingNameNulTests
{
    private static string Make(TempDirectory dir, byte[] name)
    {
        byte[] backing = new byte[100_000];
        new Random(5).NextBytes(backing);
        File.WriteAllBytes(dir.File("base.raw"), backing);
        string path = dir.File("n.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", "-b", "base.raw", "-F", "raw", "n.qed", "1M");
        Tools.QemuIo(dir.Path, "qed", "n.qed", "write -P 0x5e 8k 1k");
        Tools.Poke(path, 64, name);
        Tools.Poke(path, 60, BitConverter.GetBytes(name.Length));
        return path;
    }

    [Fact]
    public void A_name_ends_at_its_first_NUL_byte()
    {
        using var dir = new TempDirectory();
        string path = Make(dir, "base.raw\0zz"u8.ToArray());
        Assert.Contains("backing file: base.raw\n", Tools.QemuImg(dir.Path, "info", "n.qed").StdOut, StringComparison.Ordinal);
        using (var image = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true }))
        {
            Assert.Equal("base.raw", image.BackingFileName);
            Assert.Equal(Tools.QemuFlattenDigest(dir.Path, "n.qed"), DeviceDigest.Sha256(image));
        }
        Assert.Contains("backing file: base.raw\n", QedInfo(dir, "n.qed"), StringComparison.Ordinal);
    }

    [Fact]
    public void A_name_empty_up_to_its_first_NUL_byte_means_no_backing_file()
    {
        using var dir = new TempDirectory();
        string path = Make(dir, "\0\0"u8.ToArray());
        Assert.DoesNotContain("backing file", Tools.QemuImg(dir.Path, "info", "n.qed").StdOut, StringComparison.Ordinal);
        using (var image = QedImage.Open(path))
        {
            Assert.Null(image.BackingFileName);
            Assert.Null(image.Backing);
            // Without a backing file a partial write into an unallocated cluster fills the rest with zeros.
            image.Write(new byte[] { 1, 2, 3 }, 40_000);
        }
        Assert.Equal(0, Tools.QemuImgRaw(dir.Path, "check", "-f", "qed", "n.qed").ExitCode);
        using (var image = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true }))
        {
            Assert.Equal(Tools.QemuFlattenDigest(dir.Path, "n.qed"), DeviceDigest.Sha256(image));
        }
    }

    /// <summary>qed info's human output, from the qed program.</summary>
    private static string QedInfo(TempDirectory dir, string image)
    {
        var result = QedProcess.Run(dir.Path, TimeSpan.FromMinutes(1), "info", image);
        Assert.Equal(0, result.ExitCode);
        return result.StdOut;
    }
}
