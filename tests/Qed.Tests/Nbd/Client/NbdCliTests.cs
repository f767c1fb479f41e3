using Qed.Tests.Cli;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Client;

/// <summary>
/// The <c>qed</c> program (run as a process: the Native AOT build when <c>QED_CLI</c> names it) with NBD URIs where
/// files go, against qemu-nbd and compared with qemu-img and qemu-io over the same URI.
/// </summary>
public sealed class NbdCliTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static ToolResult Qed(string directory, params string[] args) => QedProcess.Run(directory, s_timeout, args);

    private static ToolResult QedOk(string directory, params string[] args)
    {
        var result = Qed(directory, args);
        Assert.True(result.ExitCode == 0, $"qed {string.Join(' ', args)}: {result}");
        return result;
    }

    [Theory]
    [InlineData(ServedImage.QemuNbd)]
    [InlineData(ServedImage.Qed)]
    public async Task Info_prints_what_qemu_img_info_prints(string server)
    {
        using var dir = new TempDirectory();
        string image = NbdClientTests.MakeLayeredImage(dir);
        await using var served = ServedImage.Start(server, dir.Path, image, readOnly: true, "the disk");
        int compared = 0;
        foreach (string uri in new[] { served.Uri("the disk"), $"nbd+unix:///the%20disk?socket={served.SocketPath}" })
        {
            foreach (string[] extra in new[] { Array.Empty<string>(), ["--output=json"] })
            {
                var qemu = Tools.QemuImg(dir.Path, ["info", .. extra, uri]);
                var ours = QedOk(dir.Path, ["info", .. extra, uri]);
                Assert.Equal(qemu.StdOut.TrimEnd('\n'), ours.StdOut.TrimEnd('\n'));
                compared++;
            }
        }
        Assert.Equal(4, compared);

        var refused = Qed(dir.Path, "info", "-f", "qed", served.Uri("the disk"));
        Assert.Equal(1, refused.ExitCode);
        Assert.Equal($"qed: Could not open '{served.Uri("the disk")}': an NBD export opens only as raw: formats are not layered over NBD (serve the QED image itself instead)\n", refused.StdErr);
        foreach (var (uri, reason) in new[]
        {
            ("nbd://host/x?tls-certificates=/etc", "'tls-certificates' needs TLS (nbds://)"),
            ("nbd+unix:///x", "nbd+unix:// needs ?socket=PATH"),
            ($"nbd+unix:///nope?socket={served.SocketPath}", "export 'nope' is not available"),
            ($"nbd+unix:///x?socket={dir.File("missing.sock")}", "No such file or directory"),
        })
        {
            var bad = Qed(dir.Path, "info", uri);
            Assert.Equal(1, bad.ExitCode);
            Assert.StartsWith($"qed: Could not open '{uri}': ", bad.StdErr, StringComparison.Ordinal);
            Assert.Contains(reason, bad.StdErr, StringComparison.Ordinal);
            Assert.Single(QedCli.Lines(bad.StdErr));
        }
    }

    [Theory]
    [InlineData(ServedImage.QemuNbd)]
    [InlineData(ServedImage.Qed)]
    public async Task Convert_copies_an_export_sparsely(string server)
    {
        using var dir = new TempDirectory();
        string image = NbdClientTests.MakeLayeredImage(dir);
        await using var served = ServedImage.Start(server, dir.Path, image, readOnly: true, "disk");
        string uri = served.Uri("disk");
        string copy = dir.File("copy.qed");
        QedOk(dir.Path, "convert", "-O", "qed", uri, copy);
        var compare = Tools.QemuImgRaw(dir.Path, "compare", "-F", "qed", uri, copy);
        Assert.True(compare.ExitCode == 0, compare.ToString());
        // Zero ranges of the export were skipped, not written: the copy is smaller than the data it describes.
        var map = Tools.QemuImg(dir.Path, "map", "--output=json", "-f", "qed", copy).StdOut;
        Assert.Contains("\"present\": false", map, StringComparison.Ordinal);

        string raw = dir.File("copy.raw");
        QedOk(dir.Path, "convert", "-f", "raw", "-O", "raw", uri, raw);
        Assert.Equal(Tools.QemuFlattenDigest(dir.Path, image), Tools.Sha256OfFile(raw));
    }

    [Theory]
    [InlineData(ServedImage.QemuNbd)]
    [InlineData(ServedImage.Qed)]
    public async Task Io_and_bench_run_against_an_export(string server)
    {
        using var dir = new TempDirectory();
        string image = NbdClientTests.MakeLayeredImage(dir);
        await using var served = ServedImage.Start(server, dir.Path, image, readOnly: false);
        string uri = served.Uri();
        string[] commands = ["read -P 0x11 0 1M", "read -P 0x22 2M 1M", "read -P 0 4M 1M", "write -P 0x66 8M 64k", "read -P 0x66 8M 64k", "write -z 8M 4k", "read -P 0 8M 4k", "flush"];
        var args = new List<string> { "io" };
        foreach (string command in commands)
        {
            args.Add("-c");
            args.Add(command);
        }
        args.Add(uri);
        var ours = QedOk(dir.Path, [.. args]);
        var qemu = Tools.Run("qemu-io", [.. args.Skip(1)], dir.Path, s_timeout);
        Assert.Equal(0, qemu.ExitCode);
        Assert.Equal(QedCli.NormalizeStatistics(qemu.StdOut), QedCli.NormalizeStatistics(ours.StdOut));
        Assert.DoesNotContain("Pattern verification failed", ours.StdOut, StringComparison.Ordinal);

        var read = QedOk(dir.Path, "bench", "-c", "2000", "-d", "8", "-s", "4096", uri);
        Assert.Contains("Sending 2000 read requests, 4096 bytes each, 8 in parallel", read.StdOut, StringComparison.Ordinal);
        Assert.Contains("Run completed in", read.StdOut, StringComparison.Ordinal);
        var write = QedOk(dir.Path, "bench", "-w", "-c", "2000", "-d", "16", "-s", "4096", "-o", "1M", uri);
        Assert.Contains("Sending 2000 write requests, 4096 bytes each, 16 in parallel", write.StdOut, StringComparison.Ordinal);
        TestSeed.Report($"qed bench over {server}: {QedCli.Lines(read.StdOut)[^1]} (reads, depth 8); {QedCli.Lines(write.StdOut)[^1]} (writes, depth 16)");
    }

    [Theory]
    [InlineData(ServedImage.QemuNbd)]
    [InlineData(ServedImage.Qed)]
    public async Task A_qed_overlay_over_an_nbd_backing_uri(string server)
    {
        using var dir = new TempDirectory();
        string image = NbdClientTests.MakeLayeredImage(dir);
        await using var served = ServedImage.Start(server, dir.Path, image, readOnly: true);
        string uri = served.Uri();
        Directory.CreateDirectory(dir.File("sub"));
        string overlay = dir.File("sub/overlay.qed");
        QedOk(dir.Path, "create", "-f", "qed", "-b", uri, "-F", "raw", overlay);
        QedOk(dir.Path, "io", "-c", "write -P 0x99 1M 64k", "-c", "read -P 0x11 0 64k", "-c", "read -P 0x99 1M 64k", overlay);

        foreach (string[] extra in new[] { Array.Empty<string>(), ["--backing-chain"], ["--backing-chain", "--output=json"] })
        {
            var qemu = Tools.QemuImg(dir.Path, ["info", .. extra, overlay]);
            var ours = QedOk(dir.Path, ["info", .. extra, overlay]);
            Assert.Equal(Normalize(qemu.StdOut), Normalize(ours.StdOut));
        }
        // Both read the same disk through the overlay (qemu with its own NBD client).
        string ourCopy = dir.File("ours.raw");
        QedOk(dir.Path, "convert", "-O", "raw", overlay, ourCopy);
        Assert.Equal(Tools.QemuFlattenDigest(dir.Path, overlay), Tools.Sha256OfFile(ourCopy));
        var check = Qed(dir.Path, "check", overlay);
        Assert.True(check.ExitCode == 0, check.ToString());
    }

    /// <summary>Drops the host file's allocated size, which differs between two runs on a growing file system.</summary>
    private static string Normalize(string output) =>
        string.Join('\n', QedCli.Lines(output).Where(l => !l.StartsWith("disk size:", StringComparison.Ordinal) && !l.Contains("\"actual-size\"", StringComparison.Ordinal)));
}
