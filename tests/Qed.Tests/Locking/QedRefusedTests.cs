using Qed.Tests.Cli;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Locking;

/// <summary>
/// While qemu-nbd serves an image (a virtual machine, in effect), every qed command answers as the matching qemu-img or
/// qemu-io command does, run at test time against the same server: writers and readers refused with QEMU's two lines
/// and exit status 1, the image left byte for byte as it was, and <c>-U</c> readers let through.
/// </summary>
public sealed class QedRefusedTests : IDisposable
{
    private const string Image = "img";
    private const string Source = "src.raw";
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    // Every command but the -U readers and the -U refusals (force-share needs read-only: one line, no hint).
    [InlineData("qed", false, 13)]
    // Served read-only, with the need-check bit and an auto-clear bit set (a writable open would repair and rewrite the
    // header): the writers are refused (check -r, io, bench -w, both creates).
    [InlineData("qed", true, 8)]
    // qemu-nbd shares writes of a raw image but refuses resizing (both creates); convert refuses writers of its source.
    [InlineData("raw", false, 5)]
    public void Qed_answers_as_qemu_while_qemu_nbd_serves_the_image(string format, bool readOnlyServer, int expectedRefusals)
    {
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", format, Image, "1M");
        Tools.QemuIo(_dir.Path, format, Image, "write -P 0x5a 0 64k");
        File.WriteAllBytes(_dir.File(Source), new byte[64 * 1024]);
        if (readOnlyServer)
        {
            Tools.Poke(_dir.File(Image), 16, 0x02);
            Tools.Poke(_dir.File(Image), 32, 0x01);
        }
        string[] server = readOnlyServer ? ["-r", "-f", format] : ["-f", format];
        int refused = 0;
        using (var nbd = BackgroundProcess.Start(_dir.Path, "qemu-nbd", [.. server, "-k", _dir.File("nbd.sock"), Image]))
        {
            LockTable.WaitForHolder(_dir.File(Image), nbd);
            foreach (string[] command in Commands(format))
            {
                string before = Tools.Sha256OfFile(_dir.File(Image));
                var qemu = Tools.Run(QemuProgram(command), QemuArguments(command, "qemu.raw"), _dir.Path, TimeSpan.FromSeconds(30));
                var qemuLeft = Tools.Sha256OfFile(_dir.File(Image));
                var ours = QedProcess.Run(_dir.Path, TimeSpan.FromSeconds(30), [.. command.Select(a => a == "OUT" ? "qed.raw" : a)]);
                string what = $"qed {string.Join(' ', command)}\nqed: {ours}\nqemu: {qemu}";

                Assert.True(qemu.ExitCode == ours.ExitCode, what);
                Assert.True(QedCli.AsQed(qemu.StdErr) == ours.StdErr, what);
                if (ours.StdErr.Contains("Is another process using the image", StringComparison.Ordinal))
                {
                    refused++;
                    Assert.True(QedCli.AsQed(qemu.StdOut) == ours.StdOut, what);
                    Assert.True(before == qemuLeft && before == Tools.Sha256OfFile(_dir.File(Image)), $"the refused command changed the image\n{what}");
                    Assert.False(File.Exists(_dir.File("qed.raw")), what);
                }
                else if (command[0] == "convert" && ours.ExitCode == 0)
                {
                    Assert.Equal(Tools.Sha256OfFile(_dir.File("qemu.raw")), Tools.Sha256OfFile(_dir.File("qed.raw")));
                }
                File.Delete(_dir.File("qemu.raw"));
                File.Delete(_dir.File("qed.raw"));
            }
            Assert.False(nbd.HasExited, $"qemu-nbd ended during the test:\n{nbd.Output}");
        }
        TestSeed.Report($"{format} served {(readOnlyServer ? "read-only" : "writable")}: {Commands(format).Count()} qed commands compared with QEMU's, {refused} refused with QEMU's two lines");
        Assert.Equal(expectedRefusals, refused);

        if (readOnlyServer)
        {
            // Evidence that the refusal prevented a write: with the server gone, the same open repairs and rewrites the header.
            string before = Tools.Sha256OfFile(_dir.File(Image));
            Assert.Equal(0, QedProcess.Run(_dir.Path, TimeSpan.FromSeconds(30), "io", "-c", "read 0 512", Image).ExitCode);
            Assert.NotEqual(before, Tools.Sha256OfFile(_dir.File(Image)));
        }
    }

    /// <summary>A backing file in use refuses the chain as QEMU does, naming the backing file in the second line.</summary>
    [Fact]
    public void A_backing_file_qemu_nbd_serves_refuses_the_chain_as_in_qemu()
    {
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "base.qed", "1M");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-b", "base.qed", "-F", "qed", "top.qed");
        string[][] commands =
        [
            ["info", "top.qed"],
            ["info", "--backing-chain", "top.qed"],
            ["info", "-U", "--backing-chain", "top.qed"],
            ["check", "top.qed"],
            ["convert", "-O", "raw", "top.qed", "OUT"],
            ["io", "-r", "-c", "read 0 512", "top.qed"],
            ["io", "-c", "read 0 512", "top.qed"],
        ];
        int refused = 0;
        using (var nbd = BackgroundProcess.Start(_dir.Path, "qemu-nbd", "-f", "qed", "-k", _dir.File("nbd.sock"), "base.qed"))
        {
            LockTable.WaitForHolder(_dir.File("base.qed"), nbd);
            foreach (string[] command in commands)
            {
                var qemu = Tools.Run(QemuProgram(command), QemuArguments(command, "qemu.raw"), _dir.Path, TimeSpan.FromSeconds(30));
                var ours = QedProcess.Run(_dir.Path, TimeSpan.FromSeconds(30), [.. command.Select(a => a == "OUT" ? "qed.raw" : a)]);
                string what = $"qed {string.Join(' ', command)}\nqed: {ours}\nqemu: {qemu}";
                Assert.True(qemu.ExitCode == ours.ExitCode && QedCli.AsQed(qemu.StdErr) == ours.StdErr, what);
                refused += ours.StdErr.Contains("Is another process using the image [base.qed]?", StringComparison.Ordinal) ? 1 : 0;
            }
        }
        TestSeed.Report($"backing file served writable: {commands.Length} qed commands on its overlay compared with QEMU's, {refused} refused");
        Assert.Equal(5, refused);
    }

    /// <summary>qed's command lines; <c>OUT</c> stands for the output file of convert. <c>create</c> is last: where it is allowed it empties the image.</summary>
    private static IEnumerable<string[]> Commands(string format)
    {
        yield return ["info", "-f", format, Image];
        yield return ["info", "-U", "-f", format, Image];
        yield return ["check", "-f", format, Image];
        yield return ["check", "-U", "-f", format, Image];
        yield return ["check", "-r", "all", "-f", format, Image];
        yield return ["check", "-U", "-r", "all", "-f", format, Image];
        yield return ["io", "-f", format, "-c", "read -q 0 4k", Image];
        yield return ["io", "-f", format, "-c", "write -q -P 0x5a 0 4k", Image];
        yield return ["io", "-r", "-f", format, "-c", "read -q -P 0x5a 0 4k", Image];
        yield return ["io", "-r", "-U", "-f", format, "-c", "read -q -P 0x5a 0 4k", Image];
        yield return ["io", "-U", "-f", format, "-c", "read -q 0 4k", Image];
        yield return ["bench", "-q", "-c", "1", "-f", format, Image];
        yield return ["bench", "-q", "-U", "-c", "1", "-f", format, Image];
        yield return ["bench", "-q", "-w", "--pattern=0x5a", "-c", "1", "-f", format, Image];
        yield return ["bench", "-q", "-U", "-w", "-c", "1", "-f", format, Image];
        yield return ["convert", "-f", format, "-O", "raw", Image, "OUT"];
        yield return ["convert", "-U", "-f", format, "-O", "raw", Image, "OUT"];
        // Onto the image in use: the destination is locked before anything is written (both write it, where allowed).
        yield return ["convert", "-O", "raw", Source, Image];
        yield return ["convert", "-O", "qed", Source, Image];
        yield return ["create", "-f", format, Image, "1M"];
        yield return ["create", "-f", "qed", Image, "1M"];
    }

    private static string QemuProgram(string[] command) => command[0] == "io" ? "qemu-io" : "qemu-img";

    private static string[] QemuArguments(string[] command, string output)
    {
        var arguments = command.Select(a => a == "OUT" ? output : a);
        return command[0] == "io" ? [.. arguments.Skip(1)] : [.. arguments];
    }
}
