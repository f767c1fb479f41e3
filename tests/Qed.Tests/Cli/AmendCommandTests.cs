using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed amend -o backing_file=..,backing_fmt=..</c>, which qemu-img 7.2 refuses for QED: the file afterwards equals
/// what <c>qemu-img rebase -u</c> makes of a copy (run at test time), the refusals that both tools share read alike,
/// and the options that cannot change are refused with one clear line, leaving the image as it was.
/// </summary>
public sealed class AmendCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private int _copies;

    public void Dispose() => _dir.Dispose();

    private string Src => Directory.CreateDirectory(_dir.File("src")).FullName;

    private string InSrc(string name) => Path.Combine(Src, name);

    private string CopyOf(string image)
    {
        string copy = _dir.File($"copy{++_copies}");
        Directory.CreateDirectory(copy);
        foreach (string file in Directory.GetFiles(Src))
        {
            File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        }
        return Path.Combine(copy, image);
    }

    /// <summary>A QED overlay over a raw base with some data, a raw file and a QED image to point it at.</summary>
    private void Images()
    {
        Tools.QemuImg(Src, "create", "-q", "-f", "raw", InSrc("base.raw"), "4M");
        Tools.QemuIo(Src, "raw", InSrc("base.raw"), "write -P 0xb0 0 1M");
        Tools.QemuImg(Src, "create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", InSrc("ov.qed"));
        Tools.QemuIo(Src, "qed", InSrc("ov.qed"), "write -P 0x11 64k 4k");
        Tools.QemuImg(Src, "create", "-q", "-f", "raw", InSrc("n.raw"), "4M");
        Tools.QemuImg(Src, "create", "-q", "-f", "qed", InSrc("q.qed"), "4M");
    }

    private void AssertEqualsRebaseU(string image, string[] amendArgs, string[] rebaseArgs)
    {
        string q = CopyOf(image);
        string o = CopyOf(image);
        Tools.QemuImg(Src, ["rebase", "-u", .. rebaseArgs, q]);
        var ours = QedCli.Run(["amend", .. amendArgs, o]);
        Assert.True(ours.ExitCode == 0, $"qed amend {string.Join(' ', amendArgs)}: {ours}");
        Assert.Equal("", ours.StdOut + ours.StdErr);
        Assert.True(Tools.Sha256OfFile(q) == Tools.Sha256OfFile(o), $"amend {string.Join(' ', amendArgs)} differs from rebase -u {string.Join(' ', rebaseArgs)}");
    }

    [Fact]
    public void Amending_the_backing_file_writes_the_bytes_of_qemu_img_rebase_u()
    {
        Images();
        var cases = new (string[] Amend, string[] Rebase)[]
        {
            (["-o", "backing_file=n.raw,backing_fmt=raw"], ["-b", "n.raw", "-F", "raw"]),
            (["-f", "qed", "-o", "backing_file=q.qed,backing_fmt=qed"], ["-b", "q.qed", "-F", "qed"]),
            (["-o", "backing_file=n.raw", "-o", "backing_fmt=raw"], ["-b", "n.raw", "-F", "raw"]),
            (["-o", "backing_file="], ["-b", ""]),
            // backing_fmt alone: the name stays, the no-probe bit follows the format.
            (["-o", "backing_fmt=qed"], ["-b", "base.raw", "-F", "qed"]),
            (["-q", "-o", "backing_file=missing.raw,backing_fmt=raw"], ["-b", "missing.raw", "-F", "raw"]),
        };
        foreach (var (amend, rebase) in cases)
        {
            AssertEqualsRebaseU("ov.qed", amend, rebase);
        }
        // F25's name at 0x10064 moves to 0x40, as qemu-img moves it.
        string f25 = Fixtures.F25(ImageWriter.Qemu, Src);
        AssertEqualsRebaseU(f25, ["-o", "backing_file=f07-base.raw,backing_fmt=raw"], ["-b", "f07-base.raw", "-F", "raw"]);
        Assert.Equal(6, cases.Length);
    }

    [Fact]
    public void Qemu_img_refuses_to_amend_qed_where_qed_amends_it()
    {
        Images();
        string q = CopyOf("ov.qed");
        var qemu = Tools.QemuImgRaw(Src, "amend", "-f", "qed", "-o", "backing_file=n.raw,backing_fmt=raw", q);
        Assert.Equal((1, "qemu-img: Format driver 'qed' does not support option amendment\n"), (qemu.ExitCode, qemu.StdErr));
        string o = CopyOf("ov.qed");
        QedCli.Ok("amend", "-f", "qed", "-o", "backing_file=n.raw,backing_fmt=raw", o);
        Assert.Contains("backing file: n.raw", Tools.QemuImg(Src, "info", o).StdOut, StringComparison.Ordinal);
        Assert.Equal(0, Tools.QemuImgRaw(Src, "check", o).ExitCode);
    }

    [Fact]
    public void Refusals_shared_with_qemu_img_read_alike()
    {
        Images();
        string o = CopyOf("ov.qed");
        string before = Tools.Sha256OfFile(o);
        // Lines qemu-img amend prints the same way.
        foreach (string[] args in new[]
        {
            new[] { "amend", "-f", "qed", o },                               // Must specify options (-o), usage
            ["amend", "-o", "backing_file=x"],                               // no file
            ["amend", "-o", "backing_file=x", o, "extra"],
            ["amend", "-t", "bogus", "-o", "backing_file=x", o],
            ["amend", "-f", "raw", "-o", "backing_file=x", InSrc("n.raw")],
            ["amend", "-f", "qed", "-o", "backing_file=x", InSrc("none.qed")],
        })
        {
            var qemu = Tools.QemuImgRaw(Src, args);
            var ours = QedCli.Run(args);
            string twice = $"Could not open '{InSrc("none.qed")}': ";
            Assert.Equal((1, QedCli.AsQed(qemu.StdErr).Replace(twice + twice, twice, StringComparison.Ordinal)), (ours.ExitCode, ours.StdErr));
        }
        // What rebase -u refuses, amend refuses with the same line (qemu-img rebase -u's).
        foreach (var (amend, rebase) in new (string, string[])[]
        {
            ("backing_file=n.raw", ["-b", "n.raw"]),                         // the format is required
            ("backing_file=n.raw,backing_fmt=bogus", ["-b", "n.raw", "-F", "bogus"]),
        })
        {
            var qemu = Tools.QemuImgRaw(Src, ["rebase", "-u", .. rebase, CopyOf("ov.qed")]);
            var ours = QedCli.Run("amend", "-o", amend, o);
            Assert.Equal((1, QedCli.AsQed(qemu.StdErr)), (ours.ExitCode, ours.StdErr));
        }
        Assert.Equal(before, Tools.Sha256OfFile(o));
    }

    [Fact]
    public void Options_that_cannot_change_and_impossible_names_are_refused_leaving_the_image_as_it_was()
    {
        Images();
        string o = CopyOf("ov.qed");
        string before = Tools.Sha256OfFile(o);
        var cases = new (string Options, string Line)[]
        {
            ("cluster_size=4096", "Invalid parameter 'cluster_size': Changing the cluster size is not supported (it is fixed at creation)"),
            ("table_size=8", "Invalid parameter 'table_size': Changing the table size is not supported (it is fixed at creation)"),
            ("size=8M", "Invalid parameter 'size': use 'qed resize' to change the size"),
            ("backing_file=n.raw,backing_fmt=raw,bogus=1", "Invalid parameter 'bogus'"),
            ("backing_file=,backing_fmt=raw", "Could not change the backing file to '': a backing format without a backing file makes no sense"),
            ("backing_file=ov.qed,backing_fmt=qed", $"Could not change the backing file to 'ov.qed': Backing file '{o}' creates an infinite loop."),
        };
        foreach (var (options, line) in cases)
        {
            var ours = QedCli.Run("amend", "-o", options, o);
            Assert.Equal((1, $"qed: {line}\n"), (ours.ExitCode, ours.StdErr));
        }
        Assert.Equal(before, Tools.Sha256OfFile(o));

        // backing_fmt alone needs a backing file to apply to.
        var lone = QedCli.Run("amend", "-o", "backing_fmt=raw", InSrc("q.qed"));
        Assert.Equal((1, $"qed: backing_fmt=raw needs a backing file, and '{InSrc("q.qed")}' has none (give backing_file too)\n"), (lone.ExitCode, lone.StdErr));

        // Unknown compatible features (F27): qemu-img rebase -u's refusal, then why.
        Tools.Poke(o, 24, 0x01);
        var compat = QedCli.Run("amend", "-o", "backing_file=n.raw,backing_fmt=raw", o);
        Assert.Equal(1, compat.ExitCode);
        Assert.StartsWith("qed: Could not change the backing file to 'n.raw': Operation not supported (", compat.StdErr, StringComparison.Ordinal);
        Assert.Equal(6, cases.Length);
    }

    [Fact]
    public void Help_lists_the_options_that_can_be_amended_and_progress_is_qemu_img_s()
    {
        Images();
        string expected = """
            Amend options for 'qed':
              backing_file=<str>     - File name of a base image
              backing_fmt=<str>      - Image format of the base image

            """.Replace("\r\n", "\n", StringComparison.Ordinal);
        Assert.Equal(expected, QedCli.Ok("amend", "-o", "help", InSrc("ov.qed")).StdOut);
        Assert.Equal(expected, QedCli.Ok("amend", "-f", "qed", "-o", "help").StdOut);
        // qemu-img's help for qcow2 has the same layout for these two lines.
        var qcow2 = Tools.QemuImg(Src, "amend", "-f", "qcow2", "-o", "help").StdOut;
        foreach (string line in QedCli.Lines(expected).Skip(1))
        {
            Assert.Contains(line + "\n", qcow2, StringComparison.Ordinal);
        }
        var progress = QedCli.Ok("amend", "-p", "-o", "backing_file=n.raw,backing_fmt=raw", InSrc("ov.qed"));
        Assert.Equal("    (0.00/100%)\r    (100.00/100%)\r\n", progress.StdOut);
    }
}
