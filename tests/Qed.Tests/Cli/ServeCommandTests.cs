using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed serve</c>'s command line: refusals word their one line as qemu-nbd 7.2 does (asked at test time), exit 1 and
/// leave nothing behind; <c>--help</c> shows qemu-nbd's options.
/// </summary>
public sealed class ServeCommandTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly TempDirectory _dir = new();

    public ServeCommandTests()
    {
        QedImage.Create(_dir.File("disk.qed"), new QedCreateOptions { Size = 1 << 20 });
    }

    public void Dispose() => _dir.Dispose();

    private static readonly string LongText = new('a', 4097);

    /// <summary>Bad command lines qemu-nbd refuses too, with the line both print (qemu-nbd's first line, its name replaced).</summary>
    public static TheoryData<string, string[]> QemuNbdRefusals => new()
    {
        { "shared not a number", ["-e", "abc", "-k", "@/s.sock", "@/disk.qed"] },
        { "shared negative", ["-e", "-1", "-k", "@/s.sock", "@/disk.qed"] },
        { "shared trailing text", ["--shared=1x", "-k", "@/s.sock", "@/disk.qed"] },
        { "port not a number", ["-p", "abc", "@/disk.qed"] },
        { "port negative", ["--port=-1", "-b", "127.0.0.1", "@/disk.qed"] },
        { "discard mode", ["--discard=foo", "-k", "@/s.sock", "@/disk.qed"] },
        { "cache mode", ["--cache=foo", "-k", "@/s.sock", "@/disk.qed"] },
        { "export name too long", ["-x", LongText, "-k", "@/s.sock", "@/disk.qed"] },
        { "description too long", ["--description", LongText, "-k", "@/s.sock", "@/disk.qed"] },
        { "socket directory missing", ["-k", "@/none/s.sock", "@/disk.qed"] },
        { "pid file directory missing", ["--pid-file=@/none/x.pid", "-k", "@/s.sock", "@/disk.qed"] },
        { "no file", ["-k", "@/s.sock"] },
        { "two files", ["-k", "@/s.sock", "@/disk.qed", "@/disk.qed"] },
        { "unknown long option", ["--bogus", "-k", "@/s.sock", "@/disk.qed"] },
        { "unknown letter", ["-Z", "-k", "@/s.sock", "@/disk.qed"] },
        { "letter without its argument", ["-k", "@/s.sock", "@/disk.qed", "-x"] },
        { "long option without its argument", ["-k", "@/s.sock", "@/disk.qed", "--export-name"] },
        { "flag given an argument", ["--read-only=yes", "-k", "@/s.sock", "@/disk.qed"] },
    };

    [Theory]
    [MemberData(nameof(QemuNbdRefusals))]
    public void Refusals_are_worded_as_qemu_nbd(string name, string[] template)
    {
        _ = name;
        var qemu = RunQemuNbd(Expand(template));
        Assert.True(qemu.ExitCode == 1, $"qemu-nbd was expected to refuse: {qemu}");
        string expected = QemuFirstLine(qemu.StdErr);

        var ours = RunRefused(Expand(template));
        Assert.Equal(expected, QedCli.Lines(ours.StdErr)[0]);
    }

    [Fact]
    public void A_missing_image_is_worded_as_qemu_nbd_without_its_internal_function_name()
    {
        string[] args = Expand(["-f", "qed", "-k", "@/s.sock", "@/missing.qed"]);
        var qemu = RunQemuNbd(args);
        Assert.Equal(1, qemu.ExitCode);
        string expected = QemuFirstLine(qemu.StdErr).Replace($"Failed to blk_new_open '{_dir.File("missing.qed")}': ", "", StringComparison.Ordinal);

        var ours = RunRefused(args);
        Assert.Equal(expected, QedCli.Lines(ours.StdErr)[0]);
        Assert.Equal($"qed: Could not open '{_dir.File("missing.qed")}': No such file or directory", expected);
    }

    /// <summary>
    /// Lines qemu-nbd 7.2 accepts though they cannot mean what they say (a port above 65535, -k with -p or -b) are
    /// refused; refusals qemu-nbd words with its internals (-f vmdk, --tls-creds naming an object) have qed's own line.
    /// ServeCommand lists the differences.
    /// </summary>
    [Theory]
    [InlineData("qed: address resolution failed for 0.0.0.0:70000: Servname not supported for ai_socktype", "-p", "70000", "@/disk.qed")]
    [InlineData("qed: -p and -b cannot be used with -k (a unix socket has no port or address)", "-k", "@/s.sock", "-p", "10999", "@/disk.qed")]
    [InlineData("qed: -p and -b cannot be used with -k (a unix socket has no port or address)", "-b", "127.0.0.1", "-k", "@/s.sock", "@/disk.qed")]
    [InlineData("qed: Could not open '@/disk.qed': Unknown driver 'vmdk': this library reads QED, qcow2 and raw images", "-f", "vmdk", "-k", "@/s.sock", "@/disk.qed")]
    [InlineData("qed: TLS credentials directory '@/none' does not exist", "--tls-creds=@/none", "-k", "@/s.sock", "@/disk.qed")]
    [InlineData("qed: Invalid handshake limit 'x'", "--handshake-limit=x", "-k", "@/s.sock", "@/disk.qed")]
    [InlineData("qed: Invalid idle timeout '-1'", "--idle-timeout=-1", "-k", "@/s.sock", "@/disk.qed")]
    public void Lines_qemu_nbd_misreads_or_words_its_own_way_are_refused(string expected, params string[] template)
    {
        var ours = RunRefused(Expand(template));
        Assert.Equal(expected.Replace("@", _dir.Path, StringComparison.Ordinal), QedCli.Lines(ours.StdErr)[0]);
    }

    [Fact]
    public void A_regular_file_at_the_socket_path_is_kept()
    {
        File.WriteAllText(_dir.File("s.sock"), "precious");
        var ours = RunRefused(Expand(["-k", "@/s.sock", "@/disk.qed"]));
        Assert.Equal($"qed: Failed to bind socket to {_dir.File("s.sock")}: Address already in use", QedCli.Lines(ours.StdErr)[0]);
        Assert.Equal("precious", File.ReadAllText(_dir.File("s.sock")));
    }

    [Fact]
    public void Help_lists_qemu_nbds_options()
    {
        var result = QedCli.Ok("serve", "--help");
        string[] longOptions =
        [
            "--format", "--read-only", "--export-name", "--description", "--socket", "--port", "--bind", "--persistent", "--shared",
            "--discard", "--allocation-depth", "--pid-file", "--fork", "--tls-creds", "--cache", "--verbose", "--help", "--version",
        ];
        foreach (string option in longOptions)
        {
            Assert.Contains(option, result.StdOut, StringComparison.Ordinal);
        }
        foreach (string letter in new[] { "-f", "-r", "-x", "-D", "-k", "-p", "-b", "-t", "-e", "-A", "-v", "-h", "-V" })
        {
            Assert.Contains($"  {letter}, ", result.StdOut, StringComparison.Ordinal);
        }
        Assert.StartsWith("usage: qed serve ", result.StdOut, StringComparison.Ordinal);
        Assert.Contains("  serve ", QedCli.Ok("--help").StdOut, StringComparison.Ordinal);
        Assert.Equal(QedCli.Ok("--version").StdOut, QedCli.Ok("serve", "-V").StdOut);
    }

    private string[] Expand(string[] template) => [.. template.Select(a => a.Replace("@", _dir.Path, StringComparison.Ordinal))];

    private ToolResult RunQemuNbd(string[] args)
    {
        var result = Tools.Run("qemu-nbd", args, _dir.Path, Timeout);
        Cleanup();
        return result;
    }

    /// <summary>Runs the real qed serve, which must refuse with one line (plus the help pointer for a usage error), exit 1 and change nothing.</summary>
    private ToolResult RunRefused(string[] args)
    {
        string image = QedCli.Fingerprint(_dir.File("disk.qed"));
        var before = Directory.GetFileSystemEntries(_dir.Path).Order().ToArray();
        var result = QedProcess.Run(_dir.Path, Timeout, ["serve", .. args]);
        Assert.True(result.ExitCode == 1, result.ToString());
        string[] lines = QedCli.Lines(result.StdErr);
        Assert.True(lines.Length == 1 || (lines.Length == 2 && lines[1] == "Try 'qed --help' for more information"), result.ToString());
        Assert.StartsWith("qed: ", lines[0], StringComparison.Ordinal);
        Assert.Equal("", result.StdOut);
        Assert.Equal(image, QedCli.Fingerprint(_dir.File("disk.qed")));
        Assert.Equal(before, Directory.GetFileSystemEntries(_dir.Path).Order().ToArray());
        return result;
    }

    /// <summary>qemu-nbd leaves its socket behind when a later step fails; each run starts from the same directory.</summary>
    private void Cleanup()
    {
        foreach (string entry in Directory.GetFileSystemEntries(_dir.Path))
        {
            if (entry != _dir.File("disk.qed"))
            {
                File.Delete(entry);
            }
        }
    }

    private static string QemuFirstLine(string stderr) => QedCli.Lines(stderr)[0].Replace("qemu-nbd: ", "qed: ", StringComparison.Ordinal);
}
