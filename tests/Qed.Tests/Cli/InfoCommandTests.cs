using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary><c>qed info</c> against <c>qemu-img info</c> on the same files, human and JSON, single images and backing chains.</summary>
public class InfoCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Img(params string[] args) => Tools.QemuImg(_dir.Path, args).StdOut;

    /// <summary>Builds the images the tests describe and returns the name of the one asked for.</summary>
    private string Make(string which)
    {
        string path = _dir.File(which);
        switch (which)
        {
            case "plain.qed":
                Img("create", "-f", "qed", path, "10M");
                break;
            case "written.qed":
                Img("create", "-f", "qed", "-o", "cluster_size=4096,table_size=2", path, "16M");
                Tools.QemuIo(_dir.Path, "qed", path, "write -P 0x11 0 4k", "write -P 0x33 1M 12k");
                break;
            case "size1000.qed":
                Img("create", "-f", "qed", path, "1000");
                break;
            case "size0.qed":
                Img("create", "-f", "qed", path, "0");
                break;
            case "base.raw":
                Img("create", "-f", "raw", path, "4M");
                Tools.QemuIo(_dir.Path, "raw", path, "write -P 0xb0 0 1M");
                break;
            case "cow.qed":
                Make("base.raw");
                Img("create", "-f", "qed", "-b", "base.raw", "-F", "raw", path);
                Tools.QemuIo(_dir.Path, "qed", path, "write -P 0xc1 4k 4k");
                break;
            case "top.qed":
                Make("cow.qed");
                Img("create", "-f", "qed", "-o", "cluster_size=16384", "-b", "cow.qed", "-F", "qed", path, "8M");
                Tools.QemuIo(_dir.Path, "qed", path, "write -P 0xa2 68k 1k");
                break;
            case "odd.raw":
                File.WriteAllText(path, "hello\n");
                break;
            case "empty.raw":
                File.WriteAllBytes(path, []);
                break;
            default:
                throw new ArgumentException(which);
        }
        return path;
    }

    public static TheoryData<string, string[]> Cases => new()
    {
        { "plain.qed", [] },
        { "plain.qed", ["-f", "qed"] },
        { "written.qed", [] },
        { "size1000.qed", [] },
        { "size0.qed", [] },
        { "cow.qed", [] },
        { "top.qed", [] },
        { "top.qed", ["--backing-chain"] },
        { "cow.qed", ["--backing-chain"] },
        { "base.raw", [] },
        { "base.raw", ["-f", "raw"] },
        { "odd.raw", [] },
        { "empty.raw", [] },
        { "plain.qed", ["-f", "raw"] },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Human_output_matches_qemu_img(string image, string[] options)
    {
        string path = Make(image);
        var qemu = Tools.QemuImg(_dir.Path, ["info", .. options, path]);
        var result = QedCli.Ok(["info", .. options, path]);
        Assert.Equal(qemu.StdOut, result.StdOut);
        Assert.Equal("", result.StdErr);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Json_output_matches_qemu_img(string image, string[] options)
    {
        string path = Make(image);
        var qemu = Tools.QemuImg(_dir.Path, ["info", "--output=json", .. options, path]);
        var result = QedCli.Ok(["info", "--output", "json", .. options, path]);
        Assert.Equal(qemu.StdOut, result.StdOut);
    }

    [Fact]
    public void Relative_paths_show_the_actual_backing_path_as_qemu_img_does()
    {
        Make("top.qed");
        // A relative spelling with a directory part: qemu-img then shows "backing file: cow.qed (actual path: DIR/cow.qed)".
        string cwd = Environment.CurrentDirectory;
        string relative = Path.GetRelativePath(cwd, _dir.File("top.qed"));
        Assert.Contains('/', relative);
        var qemu = Tools.QemuImg(cwd, "info", "--backing-chain", relative);
        var result = QedCli.Ok("info", "--backing-chain", relative);
        Assert.Equal(qemu.StdOut, result.StdOut);
        Assert.Contains("(actual path: ", result.StdOut, StringComparison.Ordinal);

        qemu = Tools.QemuImg(cwd, "info", "--backing-chain", "--output=json", relative);
        result = QedCli.Ok("info", "--backing-chain", "--output=json", relative);
        Assert.Equal(qemu.StdOut, result.StdOut);
    }

    [Fact]
    public void Dirty_flag_is_read_from_disk_unlike_qemu_img()
    {
        string path = Make("written.qed");
        Tools.Poke(path, 16, 0x02);
        string before = QedCli.Fingerprint(path);

        var qemuJson = Tools.QemuImg(_dir.Path, "info", "--output=json", path).StdOut;
        var json = QedCli.Ok("info", "--output=json", path).StdOut;
        // qemu-img 7.2 always reports false for QED (QED-FORMAT.md §10.2); everything else is the same.
        Assert.Contains("\"dirty-flag\": false", qemuJson, StringComparison.Ordinal);
        Assert.Equal(qemuJson.Replace("\"dirty-flag\": false", "\"dirty-flag\": true", StringComparison.Ordinal), json);

        var human = QedCli.Ok("info", path).StdOut;
        var qemuHuman = Tools.QemuImg(_dir.Path, "info", path).StdOut;
        Assert.Equal(qemuHuman.Replace("cluster_size: 4096\n", "cluster_size: 4096\ncleanly shut down: no\n", StringComparison.Ordinal), human);

        // info is read-only: the bit (and every other byte) stays as it was.
        Assert.Equal(before, QedCli.Fingerprint(path));
    }

    [Fact]
    public void Does_not_change_the_image_or_need_its_backing_file()
    {
        string path = Make("cow.qed");
        File.Delete(_dir.File("base.raw"));
        string before = QedCli.Fingerprint(path);

        var qemu = Tools.QemuImg(_dir.Path, "info", path);
        var result = QedCli.Ok("info", path);
        Assert.Equal(qemu.StdOut, result.StdOut);

        var chain = QedCli.Run("info", "--backing-chain", path);
        var qemuChain = Tools.QemuImgRaw(_dir.Path, "info", "--backing-chain", path);
        Assert.Equal(1, chain.ExitCode);
        Assert.Equal("", chain.StdOut);
        Assert.Equal(1, qemuChain.ExitCode);
        Assert.Equal($"qed: Could not open '{path}': Could not open backing file: Could not open '{_dir.File("base.raw")}': No such file or directory\n", chain.StdErr);
        Assert.Equal(before, QedCli.Fingerprint(path));
    }

    [Fact]
    public void Unknown_output_format_is_refused_like_qemu_img()
    {
        string path = Make("plain.qed");
        var qemu = Tools.QemuImgRaw(_dir.Path, "info", "--output=xml", path);
        var result = QedCli.Run("info", "--output=xml", path);
        Assert.Equal(1, result.ExitCode);
        Assert.Equal(QedCli.AsQed(qemu.StdErr), result.StdErr);
    }

    [Fact]
    public void Needs_exactly_one_file()
    {
        var result = QedCli.Run("info");
        Assert.Equal(1, result.ExitCode);
        Assert.Equal("qed: Expecting one image file name\nTry 'qed --help' for more information\n", result.StdErr);
        Assert.Equal(QedCli.AsQed(Tools.QemuImgRaw(_dir.Path, "info").StdErr), result.StdErr);
    }
}
