using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;
using static Qed.Tests.Formats.Qcow2CheckOracle;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed check</c> on qcow2 against <c>qemu-img check</c> run at test time: stdout, stderr (with our program name) and
/// exit status equal on every QCOW2.md §16 fixture in both output formats and on corrupted images (including the checks
/// that stop without a report and those with internal errors); <c>-r</c> refused in one line with the file unchanged;
/// encrypted images refused; the backing chain never opened.
/// </summary>
public sealed class CheckQcow2Tests : IDisposable
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string, string> FixtureRuns()
    {
        var data = new TheoryData<string, string>();
        foreach (var fixture in Qcow2Fixtures.All.Where(f => !f.Encrypted))
        {
            data.Add(fixture.Name, "human");
            data.Add(fixture.Name, "json");
        }
        return data;
    }

    /// <summary>Every fixture but Q16, run as a user would, in the fixture directory (Q17's data file is named relative to it).</summary>
    [Theory]
    [MemberData(nameof(FixtureRuns))]
    public void Fixture_output_same_as_qemu_img(string name, string output)
    {
        var fixture = Qcow2Fixtures.Get(name);
        string[] args = ["check", $"--output={output}", fixture.FileName];
        var expected = Tools.Run("qemu-img", args, Qcow2Fixtures.Directory, s_timeout);
        var actual = QedProcess.Run(Qcow2Fixtures.Directory, s_timeout, args);
        AssertSameRun(expected, actual);
        Assert.Equal(fixture.Check.ExitCode, actual.ExitCode);
    }

    /// <summary>The encrypted fixture: qemu-img needs the key; qed refuses in one line, writes nothing.</summary>
    [Fact]
    public void Encrypted_image_refused_in_one_line()
    {
        string path = Qcow2Fixtures.CopyTo("Q16", _dir.Path);
        string before = QedCli.Fingerprint(path);
        var result = QedCli.Run("check", path);
        Assert.Equal(1, result.ExitCode);
        Assert.Equal("", result.StdOut);
        Assert.Equal([$"qed: Could not open '{path}': encrypted qcow2 images are not supported"], QedCli.Lines(result.StdErr));
        Assert.Equal(before, QedCli.Fingerprint(path));
        Assert.Equal(1, Tools.QemuImgRaw(_dir.Path, "check", path).ExitCode);
    }

    public static TheoryData<string> Damages => new()
    {
        "refcount 0", "leak", "snapshot table too large", "snapshot table offset invalid", "refblock unaligned",
        "stale bitmap", "overflow", "dirty",
    };

    /// <summary>Damaged images, in both output formats and quiet: the same lines on both streams and the same status.</summary>
    [Theory]
    [MemberData(nameof(Damages))]
    public void Damaged_image_output_same_as_qemu_img(string damage)
    {
        string path = Damaged(damage);
        foreach (string[] options in new[] { new[] { "--output=human" }, ["--output=json"], ["-q"], ["-f", "qcow2"] })
        {
            string[] args = ["check", .. options, path];
            var expected = Tools.QemuImgRaw(_dir.Path, args);
            var actual = QedCli.Run(args);
            AssertSameRun(expected, actual, string.Join(' ', options));
        }
    }

    /// <summary><c>-r</c> on qcow2 (probed or named): one line, exit 1, nothing written.</summary>
    [Theory]
    [InlineData("leaks", false)]
    [InlineData("all", false)]
    [InlineData("leaks", true)]
    [InlineData("all", true)]
    public void Repair_refused_before_anything_is_written(string mode, bool named)
    {
        string path = Damaged("leak");
        string before = QedCli.Fingerprint(path);
        string[] args = named ? ["check", "-r", mode, "-f", "qcow2", path] : ["check", "-r", mode, path];
        var result = QedCli.Run(args);
        Assert.Equal(1, result.ExitCode);
        Assert.Equal("", result.StdOut);
        Assert.Equal(["qed: qcow2 images cannot be repaired (repair not supported); run the check without -r"], QedCli.Lines(result.StdErr));
        Assert.Equal(before, QedCli.Fingerprint(path));
    }

    /// <summary>
    /// The check never opens the backing chain: a missing backing file and a backing loop (on which qemu-img check hangs,
    /// QCOW2.md §15) give qemu-img's report for the image opened without its backing file (<c>"backing": null</c>).
    /// </summary>
    [Theory]
    [InlineData("missing")]
    [InlineData("loop")]
    [InlineData("self")]
    public void Backing_chain_never_opened(string chain)
    {
        string a = _dir.File("a.qcow2"), b = _dir.File("b.qcow2");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qcow2", b, "64M");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a);
        Tools.QemuIo(_dir.Path, "qcow2", a, "write -P 0xa1 64k 128k");
        switch (chain)
        {
            case "missing":
                File.Delete(b);
                break;
            case "loop":
                Tools.QemuImg(_dir.Path, "rebase", "-u", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b);
                break;
            default:
                Tools.QemuImg(_dir.Path, "rebase", "-u", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", a);
                break;
        }
        var expected = Tools.QemuImgRaw(_dir.Path, "check", $$"""json:{"driver":"qcow2","file":{"driver":"file","filename":"{{a}}"},"backing":null}""");
        var started = DateTime.UtcNow;
        var actual = QedCli.Run("check", a);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(10), "the check took too long");
        AssertSameRun(expected, actual);
        Assert.Equal(0, actual.ExitCode);
    }

    private static void AssertSameRun(ToolResult qemu, ToolResult qed, string what = "")
    {
        string expectedErr = string.Join('\n', QedCli.Lines(qemu.StdErr).Select(QedCli.AsQed));
        string actualErr = string.Join('\n', QedCli.Lines(qed.StdErr));
        Assert.True(qemu.ExitCode == qed.ExitCode && qemu.StdOut == qed.StdOut && expectedErr == actualErr,
            $"{what}\nqemu-img: {qemu}\nqed: {qed}");
    }

    /// <summary>A 64 MiB image (64 KiB clusters, data at 0-192 KiB and 1 MiB) with one kind of damage.</summary>
    private string Damaged(string damage)
    {
        string path = _dir.File(damage.Replace(' ', '-') + ".qcow2");
        string options = damage == "overflow" ? "refcount_bits=1" : damage == "dirty" ? "lazy_refcounts=on" : "compat=1.1";
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qcow2", "-o", options, path, "64M");
        if (damage == "dirty")
        {
            Tools.Run("qemu-io", ["-f", "qcow2", "-c", "write -P 0xd1 0 128k", "-c", "sigraise 9", path], _dir.Path);
            return path;
        }
        Tools.QemuIo(_dir.Path, "qcow2", path, "write -P 0x11 0 192k", "write -P 0x12 1M 64k");
        switch (damage)
        {
            case "refcount 0":
                PokeBigEndian(path, 0x20000 + 5 * 2, 0, 2);
                break;
            case "leak":
                using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write))
                {
                    stream.SetLength(stream.Length + 64 * 1024);
                }
                PokeBigEndian(path, 0x20000 + 9 * 2, 1, 2);
                break;
            case "snapshot table too large":
                PokeBigEndian(path, 60, 0x1_0001, 4);
                break;
            case "snapshot table offset invalid":
                PokeBigEndian(path, 64, 0x1200);
                break;
            case "refblock unaligned":
                PokeBigEndian(path, 0x10000, 0x2_0200);
                break;
            case "stale bitmap":
                Tools.QemuImg(_dir.Path, "bitmap", "--add", path, "bm0");
                PokeBigEndian(path, 88, 0);
                break;
            case "overflow":
                PokeBigEndian(path, 0x40010, 0x8000_0000_0005_0000);
                break;
        }
        return path;
    }
}
