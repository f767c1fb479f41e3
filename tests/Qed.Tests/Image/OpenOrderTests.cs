using System.Security.Cryptography;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>A writable open that fails (here: a missing backing file) writes nothing first: no auto-clear bit cleared, no repair run.</summary>
public class OpenOrderTests
{
    [Fact]
    public void A_failed_writable_open_changes_nothing_even_on_a_dirty_image_with_autoclear_bits()
    {
        using var dir = new TempDirectory();
        string path = dir.File("o.qed");
        QedImage.Create(path, new QedCreateOptions { Size = 1 << 20, BackingFile = "missing.raw", BackingFormat = "raw" });
        Tools.Poke(path, 16, 0x07); // backing file, need check, no probe
        Tools.Poke(path, 32, 0x01); // an unknown auto-clear bit
        byte[] before = SHA256.HashData(File.ReadAllBytes(path));

        var error = Assert.Throws<QedBackingFileException>(() => QedImage.Open(path));
        Assert.Contains("missing.raw", error.Message, StringComparison.Ordinal);
        Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(path)));
    }

    [Fact]
    public void An_image_opened_without_its_backing_file_refuses_a_write_that_would_need_backing_data()
    {
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("b.raw"), Enumerable.Repeat((byte)0xb0, 1 << 20).ToArray());
        string path = dir.File("o.qed");
        QedImage.Create(path, new QedCreateOptions { Size = 1 << 20, BackingFile = "b.raw", BackingFormat = "raw" });
        using (var image = QedImage.Open(path, new ImageOpenOptions { NoBacking = true }))
        {
            Assert.Throws<QedBackingFileException>(() => image.Write(new byte[100], 1000));
        }
        using var reopened = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        byte[] data = new byte[4096];
        reopened.Read(data, 0);
        Assert.All(data, b => Assert.Equal(0xb0, b));
    }
}
