using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary><c>qed io</c> against qemu-io: the same lines (statistics normalised), the same exit status, the same resulting disk.</summary>
public class IoCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Runs the same commands with qemu-io on one copy and with qed io on another; returns both results.</summary>
    private (ToolResult Qemu, ToolResult Ours) RunBoth(string format, string[] options, params string[] commands)
    {
        string theirs = _dir.File("theirs.img");
        string ours = _dir.File("ours.img");
        foreach (string file in new[] { theirs, ours })
        {
            // Two identical fresh 1 MiB images, made in-process to keep the many cases fast.
            if (format == "qed")
            {
                QedImage.Create(file, new QedCreateOptions { Size = 1 << 20 });
            }
            else
            {
                RawImage.Create(file, 1 << 20).Dispose();
            }
        }
        var arguments = new List<string>(options);
        foreach (string command in commands)
        {
            arguments.Add("-c");
            arguments.Add(command);
        }
        var qemu = Tools.Run("qemu-io", [.. arguments, theirs], _dir.Path);
        var result = QedCli.Run(["io", .. arguments, ours]);
        return (qemu, result);
    }

    private static void AssertSameOutput(ToolResult qemu, ToolResult ours)
    {
        Assert.Equal(QedCli.NormalizeStatistics(qemu.StdOut), QedCli.NormalizeStatistics(ours.StdOut));
        Assert.Equal(QedCli.Lines(qemu.StdErr).Select(QedCli.AsQed), QedCli.Lines(ours.StdErr));
        Assert.Equal(qemu.ExitCode, ours.ExitCode);
    }

    [Fact]
    public void Reads_and_writes_print_what_qemu_io_prints()
    {
        var (qemu, ours) = RunBoth("qed", ["-f", "qed"],
            "write 0 4k",
            "write -P 0xab 4k 4k",
            "read -P 0xab 4k 4k",
            "read -v 4090 20",
            "write -z 64k 64k",
            "read -P 0 64k 64k",
            "flush",
            "read 0 1.5k",
            "read 0 1000",
            "read 0x10 0X10",
            "write -P 0377 1020k 4k",
            "read -v -P 255 1020k 32",
            "read 1M 0",
            "write -q 8k 1k",
            "read -q 8k 1k",
            "read 0 1M");

        AssertSameOutput(qemu, ours);
        Assert.Equal(0, ours.ExitCode);
        Assert.Contains("wrote 4096/4096 bytes at offset 0\n4 KiB, 1 ops; ", ours.StdOut, StringComparison.Ordinal);

        var compare = Tools.QemuImgRaw(_dir.Path, "compare", _dir.File("theirs.img"), _dir.File("ours.img"));
        Assert.True(compare.ExitCode == 0, compare.ToString());
        Assert.Equal(0, Tools.QemuImgRaw(_dir.Path, "check", _dir.File("ours.img")).ExitCode);
    }

    [Fact]
    public void Raw_images_work_too()
    {
        var (qemu, ours) = RunBoth("raw", ["-f", "raw"], "write -P 0x42 1000 3000", "read -P 0x42 1000 3000", "read -v 990 20", "write -z 1000 10");
        AssertSameOutput(qemu, ours);
        Assert.Equal(File.ReadAllBytes(_dir.File("theirs.img")), File.ReadAllBytes(_dir.File("ours.img")));
    }

    [Theory]
    [InlineData("read -P 0xab 0 8k")]
    [InlineData("read -P 0xab -v 0 20")]
    [InlineData("read -P 1 -q 0 1")]
    [InlineData("read 1M 1")]
    [InlineData("read 0 2M")]
    [InlineData("write 1020k 8k")]
    [InlineData("write -z 1048577 0")]
    [InlineData("read 0 2e")]
    [InlineData("read foo 1")]
    [InlineData("read 0 0x")]
    [InlineData("read 99E 1")]
    [InlineData("read 8E 1")]
    [InlineData("read -P xyz 0 1")]
    [InlineData("read -P 256 0 1")]
    [InlineData("write -P 0x1ff 0 1")]
    [InlineData("write -P -1 0 1")]
    [InlineData("write -z -P 1 0 4k")]
    [InlineData("read 0")]
    [InlineData("read -P")]
    [InlineData("write 0")]
    [InlineData("flush x")]
    [InlineData("bogus")]
    public void Failing_commands_print_the_same_and_exit_1(string command)
    {
        var (qemu, ours) = RunBoth("qed", ["-f", "qed"], command, "read 0 512");
        AssertSameOutput(qemu, ours);
        Assert.Equal(1, ours.ExitCode);
    }

    [Theory]
    [InlineData("read -x 0 1", "read: invalid option -- 'x'")]
    [InlineData("read 0 -5", "read: invalid option -- '5'")]
    [InlineData("write -P 1 0 1 1", null)]
    [InlineData("read 0 1 2", null)]
    public void Malformed_commands_print_the_usage_on_stdout(string command, string? error)
    {
        var (qemu, ours) = RunBoth("qed", ["-f", "qed"], command);
        Assert.Equal(1, qemu.ExitCode);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal(error is null ? [] : [error], QedCli.Lines(ours.StdErr));
        Assert.Equal(QedCli.Lines(qemu.StdErr), QedCli.Lines(ours.StdErr));
        // Our usage line lists only the options we implement, so it differs from qemu-io's; the command word and "off len" agree.
        string usage = Assert.Single(QedCli.Lines(ours.StdOut));
        Assert.StartsWith(command.Split(' ')[0] + " [", usage, StringComparison.Ordinal);
        Assert.Contains("] off len -- ", usage, StringComparison.Ordinal);
    }

    [Fact]
    public void Read_only_refuses_writes_like_qemu_io()
    {
        var (qemu, ours) = RunBoth("qed", ["-r", "-f", "qed"], "write 0 4k", "read 0 4k", "write -z 0 4k", "flush");
        AssertSameOutput(qemu, ours);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal(["qed: Block node is read-only", "qed: Block node is read-only"], QedCli.Lines(ours.StdErr));
    }

    [Fact]
    public void Read_only_leaves_the_file_unchanged_even_when_dirty()
    {
        string path = _dir.File("dirty.qed");
        Tools.QemuImg(_dir.Path, "create", "-f", "qed", path, "1M");
        Tools.QemuIo(_dir.Path, "qed", path, "write -P 0x33 0 64k");
        Tools.Poke(path, 16, 0x02);
        string before = QedCli.Fingerprint(path);
        var result = QedCli.Run("io", "-r", "-c", "read -P 0x33 0 64k", path);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal(before, QedCli.Fingerprint(path));
    }

    [Fact]
    public void Probes_the_format_when_none_is_given()
    {
        var (qemu, ours) = RunBoth("qed", [], "write -P 7 0 4k", "read -P 7 0 4k");
        AssertSameOutput(qemu, ours);
        Assert.Equal(Tools.QemuFlattenDigest(_dir.Path, _dir.File("theirs.img")), Tools.QemuFlattenDigest(_dir.Path, _dir.File("ours.img")));
    }

    [Fact]
    public void Writes_reach_qemu()
    {
        string path = _dir.File("w.qed");
        Tools.QemuImg(_dir.Path, "create", "-f", "qed", "-o", "cluster_size=4096", path, "8M");
        QedCli.Ok("io", "-c", "write -P 0x61 4k 8k", "-c", "write -z 1M 1M", "-c", "write 7M 1M", path);
        var read = Tools.QemuIo(_dir.Path, "qed", path, "read -P 0x61 4k 8k", "read -P 0 0 4k", "read -P 0 1M 1M", "read -P 0xcd 7M 1M");
        Assert.DoesNotContain("verification failed", read.StdOut, StringComparison.Ordinal);
        Assert.Equal(0, Tools.QemuImgRaw(_dir.Path, "check", path).ExitCode);
    }

    [Fact]
    public void Needs_a_file_and_a_command()
    {
        var noFile = QedCli.Run("io", "-c", "read 0 1");
        Assert.Equal(1, noFile.ExitCode);
        Assert.Equal(2, QedCli.Lines(noFile.StdErr).Length);
        var noCommand = QedCli.Run("io", _dir.File("x"));
        Assert.Equal(1, noCommand.ExitCode);
        Assert.StartsWith("qed: ", noCommand.StdErr, StringComparison.Ordinal);
    }
}
