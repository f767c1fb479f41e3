using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>Broken or wrong inputs: every command answers with one line on stderr and exit status 1, and changes no file.</summary>
public class BadInputTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public BadInputTests()
    {
        Directory.CreateDirectory(_dir.File("dir"));
        File.WriteAllBytes(_dir.File("empty"), []);
        File.WriteAllText(_dir.File("text.txt"), "hello, this is not a disk image\n");
        QedImage.Create(_dir.File("good.qed"), new QedCreateOptions { Size = 1 << 20 });
        // A QED header whose cluster size is 3000 (QED-FORMAT.md §2.1 step 4).
        File.Copy(_dir.File("good.qed"), _dir.File("badcluster.qed"));
        Tools.Poke(_dir.File("badcluster.qed"), 4, 0xb8, 0x0b, 0x00, 0x00);
        // A header cut off before its L1 table (step 8), and unknown feature bits (step 3).
        File.WriteAllBytes(_dir.File("truncated.qed"), File.ReadAllBytes(_dir.File("good.qed"))[..4096]);
        File.Copy(_dir.File("good.qed"), _dir.File("features.qed"));
        Tools.Poke(_dir.File("features.qed"), 16, 0x08);
        // Only the magic matters to the probe: "QFI\xfb".
        File.WriteAllBytes(_dir.File("image.qcow2"), [(byte)'Q', (byte)'F', (byte)'I', 0xfb, 0, 0, 0, 3, .. new byte[504]]);
    }

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string, string?> Inputs => new()
    {
        { "missing", null },
        { "missing", "qed" },
        { "dir", null },
        { "dir", "qed" },
        { "empty", "qed" },
        { "text.txt", "qed" },
        { "badcluster.qed", null },
        { "truncated.qed", null },
        { "features.qed", null },
        { "image.qcow2", null },
        { "good.qed", "vmdk" },
    };

    private static string[] FormatOption(string? format) => format is null ? [] : ["-f", format];

    private void AssertOneLineFailure(string file, string[] args, string? expectedStart = null)
    {
        string path = _dir.File(file);
        string before = File.Exists(path) ? QedCli.Fingerprint(path) : "";
        var result = QedCli.Run(args);
        Assert.True(result.ExitCode == 1, result.ToString());
        string line = Assert.Single(QedCli.Lines(result.StdErr));
        Assert.StartsWith(expectedStart ?? "qed: ", line, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.StdErr, StringComparison.Ordinal);
        Assert.Equal("", result.StdOut);
        Assert.Equal(before, File.Exists(path) ? QedCli.Fingerprint(path) : "");
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Info_fails_with_one_line(string file, string? format) =>
        AssertOneLineFailure(file, ["info", .. FormatOption(format), _dir.File(file)], $"qed: Could not open '{_dir.File(file)}': ");

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Io_fails_with_one_line(string file, string? format) =>
        AssertOneLineFailure(file, ["io", .. FormatOption(format), "-c", "write 0 4k", _dir.File(file)], $"qed: can't open device {_dir.File(file)}: ");

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Convert_fails_with_one_line(string file, string? format)
    {
        AssertOneLineFailure(file, ["convert", .. FormatOption(format), "-O", "qed", _dir.File(file), _dir.File("out.qed")], $"qed: Could not open '{_dir.File(file)}': ");
        Assert.False(File.Exists(_dir.File("out.qed")));
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Create_over_a_bad_backing_file_fails_with_one_line(string file, string? format)
    {
        string image = _dir.File("new.qed");
        AssertOneLineFailure(file, ["create", "-f", "qed", "-b", _dir.File(file), "-F", format ?? "qed", image], $"qed: {image}: ");
        Assert.False(File.Exists(image));
    }

    [Fact]
    public void Messages_match_qemu_img_where_qemu_img_has_them()
    {
        // qemu-img repeats "Could not open 'x':" twice for a missing file; we say it once.
        Assert.Equal($"qed: Could not open '{_dir.File("missing")}': No such file or directory\n", QedCli.Run("info", _dir.File("missing")).StdErr);
        Assert.Equal($"qed: Could not open '{_dir.File("empty")}': Image not in QED format", QedCli.Run("info", "-f", "qed", _dir.File("empty")).StdErr[..^1].Split(" (")[0]);
        Assert.StartsWith($"qed: Could not open '{_dir.File("badcluster.qed")}': QED cluster size is invalid", QedCli.Run("info", _dir.File("badcluster.qed")).StdErr, StringComparison.Ordinal);
        Assert.Equal($"qed: Could not open '{_dir.File("features.qed")}': Unsupported QED features: 8\n", QedCli.Run("info", _dir.File("features.qed")).StdErr);
        var qemu = Tools.QemuImgRaw(_dir.Path, "info", _dir.File("features.qed"));
        Assert.Equal(QedCli.AsQed(qemu.StdErr), QedCli.Run("info", _dir.File("features.qed")).StdErr);
    }

    [Fact]
    public void Probing_opens_non_qed_files_as_raw()
    {
        var qemu = Tools.QemuImg(_dir.Path, "info", _dir.File("text.txt"));
        Assert.Equal(qemu.StdOut, QedCli.Ok("info", _dir.File("text.txt")).StdOut);
        qemu = Tools.QemuImg(_dir.Path, "info", _dir.File("empty"));
        Assert.Equal(qemu.StdOut, QedCli.Ok("info", _dir.File("empty")).StdOut);
    }
}
