using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Cli;

/// <summary>
/// A dirty or corrupt-flagged qcow2 image opens read-only with one warning line (QEMU reads both silently): the data is
/// still read exactly as qemu-img reads it; info and check, which show the flags themselves, do not warn.
/// </summary>
public class Qcow2OpenWarningTests
{
    /// <summary>Byte 79 holds incompatible feature bits 0-7 (big-endian u64 at 72): bit 0 dirty, bit 1 corrupt.</summary>
    private const long IncompatibleLowByte = 79;

    [Theory]
    [InlineData("dirty", 0x01, "was not closed cleanly (qcow2 dirty bit)")]
    [InlineData("corrupt", 0x02, "is marked corrupt (qcow2 corrupt bit)")]
    public void Flagged_image_converts_with_one_warning_and_qemus_bytes(string kind, byte bit, string words)
    {
        using var dir = new TempDirectory();
        string image = Qcow2Fixtures.CopyTo("Q02", dir.Path);
        Tools.Poke(image, IncompatibleLowByte, bit);
        string before = Tools.Sha256OfFile(image);

        var result = QedCli.Ok("convert", "-O", "raw", image, dir.File("out.raw"));
        var warning = Assert.Single(QedCli.Lines(result.StdErr));
        Assert.Equal($"qed: warning: '{image}' {words}; reading it read-only as it is" + (kind == "dirty" ? ", refcounts not repaired" : " (qed check shows what is wrong)"), warning);
        Tools.QemuImg(dir.Path, "convert", "-U", "-f", "qcow2", "-O", "raw", image, "qemu.raw");
        Assert.Equal(Tools.Sha256OfFile(dir.File("qemu.raw")), Tools.Sha256OfFile(dir.File("out.raw")));
        Assert.Equal(before, Tools.Sha256OfFile(image));

        // info and check show the flag themselves: no warning there.
        Assert.Equal("", QedCli.Run("info", image).StdErr);
        Assert.DoesNotContain("warning", QedCli.Run("check", image).StdErr, StringComparison.Ordinal);
    }

    [Fact]
    public void Dirty_fixture_warns_once_through_a_qed_overlay()
    {
        using var dir = new TempDirectory();
        string image = Qcow2Fixtures.CopyTo("Q13", dir.Path);
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-b", "Q13.qcow2", "-F", "qcow2", "top.qed");
        var result = QedCli.Ok("map", "--output=json", dir.File("top.qed"));
        var warning = Assert.Single(QedCli.Lines(result.StdErr));
        Assert.Contains("Q13.qcow2' was not closed cleanly", warning, StringComparison.Ordinal);
        Assert.Equal(Tools.QemuImg(dir.Path, "map", "--output=json", "top.qed").StdOut, result.StdOut.Replace(dir.Path + "/", "", StringComparison.Ordinal));
    }
}
