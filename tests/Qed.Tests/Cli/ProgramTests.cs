using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>The top level of <c>qed</c>: help, version, unknown commands, and the real executable's exit status.</summary>
public class ProgramTests
{
    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    [InlineData("help")]
    public void Help_lists_the_commands(string argument)
    {
        var result = QedCli.Ok(argument);
        foreach (string command in new[] { "create", "info", "convert", "io" })
        {
            Assert.Contains($"  {command} ", result.StdOut, StringComparison.Ordinal);
        }
        Assert.Equal("", result.StdErr);
    }

    [Fact]
    public void Version_prints_one_line()
    {
        var result = QedCli.Ok("--version");
        Assert.Matches(@"^qed version \d+\.\d+\.\d+(?: \(commit [0-9a-f]{7}\))?\n$", result.StdOut);
    }

    [Theory]
    [InlineData(new string[0], "qed: Not enough arguments")]
    [InlineData(new[] { "bogus" }, "qed: Command not found: bogus")]
    [InlineData(new[] { "--foo" }, "qed: unrecognized option '--foo'")]
    public void Mistakes_point_to_the_help_like_qemu_img(string[] args, string message)
    {
        var result = QedCli.Run(args);
        Assert.Equal(1, result.ExitCode);
        Assert.Equal($"{message}\nTry 'qed --help' for more information\n", result.StdErr);
        var qemu = Tools.QemuImgRaw(Environment.CurrentDirectory, args);
        Assert.Equal(result.StdErr, QedCli.AsQed(QedCli.Lines(qemu.StdErr)[0]) + "\n" + QedCli.Lines(qemu.StdErr)[1].Replace("qemu-img", "qed", StringComparison.Ordinal) + "\n");
    }

    [Fact]
    public void The_executable_returns_the_exit_status_and_flushes_its_output()
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "Qed.Cli.dll");
        Assert.True(File.Exists(dll), dll);
        using var dir = new TempDirectory();
        string image = dir.File("a.qed");

        var created = Tools.Run("dotnet", [dll, "create", "-f", "qed", image, "1M"], dir.Path);
        Assert.Equal(0, created.ExitCode);
        Assert.Equal($"Formatting '{image}', fmt=qed size=1048576 cluster_size=65536\n", created.StdOut);

        var failed = Tools.Run("dotnet", [dll, "info", dir.File("missing")], dir.Path);
        Assert.Equal(1, failed.ExitCode);
        Assert.Equal($"qed: Could not open '{dir.File("missing")}': No such file or directory\n", failed.StdErr);
    }
}
