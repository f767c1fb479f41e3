using System.Diagnostics;
using System.Text.Json;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed serve</c> exporting qcow2 read-only, checked with real clients: nbdinfo sees the size and the read-only flag
/// and the same allocation map as qemu-nbd serving the same file, qemu-img compare finds the export equal to the image
/// (compressed clusters, subclusters over a backing file, an external data file, a three-image chain), qemu-io's
/// writes are refused and the files stay unchanged; the encrypted fixture is refused in one line.
/// </summary>
public sealed class ServeQcow2Tests : IDisposable
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string SocketPath => _dir.File("s.sock");

    private string Uri => $"nbd+unix:///?socket={SocketPath}";

    public static TheoryData<string> Served() => ["Q07", "Q10", "Q17", "Q18", "Q06", "Q09"];

    [Theory]
    [MemberData(nameof(Served))]
    public void Export_reads_as_the_image_and_refuses_writes(string name)
    {
        var fixture = Qcow2Fixtures.Get(name);
        // A copy, served from its directory (Q17's data file is named relative to the working directory).
        string dir = _dir.Path;
        Qcow2Fixtures.CopyTo(name, dir);
        string[] files = [.. Directory.GetFiles(dir).Order(StringComparer.Ordinal)];
        var before = files.Select(Tools.Sha256OfFile).ToArray();
        using (var server = ServeProcess.Start(dir, "-t", "-r", "-k", SocketPath, fixture.FileName))
        {
            var info = Tools.Run("nbdinfo", ["--json", Uri], dir, s_timeout);
            Assert.True(info.ExitCode == 0, info.ToString());
            using (var json = JsonDocument.Parse(info.StdOut))
            {
                var export = json.RootElement.GetProperty("exports")[0];
                Assert.True(export.GetProperty("is_read_only").GetBoolean());
                Assert.Equal(fixture.VirtualSize, export.GetProperty("export-size").GetInt64());
            }

            var compare = Tools.Run("qemu-img", ["compare", "-f", "raw", "-F", "qcow2", Uri, fixture.FileName], dir, s_timeout);
            Assert.True(compare.ExitCode == 0, compare.ToString());
            string ourMap = Tools.Run("nbdinfo", ["--map", Uri], dir, s_timeout).StdOut;

            var write = Tools.Run("qemu-io", ["-f", "raw", "-c", "write -P 0x22 0 4k", Uri], dir, s_timeout);
            Assert.NotEqual(0, write.ExitCode);
            Assert.Contains("Permission denied", write.StdErr, StringComparison.Ordinal);

            server.Signal(ServeProcess.SigTerm);
            Assert.Equal(0, server.WaitForExit(s_timeout));

            Assert.Equal(QemuNbdMap(dir, fixture.FileName), ourMap);
        }
        Assert.Equal(before, files.Select(Tools.Sha256OfFile).ToArray());
    }

    /// <summary><c>nbdinfo --map</c> of qemu-nbd serving the same file read-only.</summary>
    private string QemuNbdMap(string dir, string file)
    {
        string socket = _dir.File("qemu.sock");
        using var qemuNbd = Process.Start(new ProcessStartInfo("qemu-nbd", ["-r", "-t", "-f", "qcow2", "-k", socket, file])
        {
            WorkingDirectory = dir,
            RedirectStandardError = true,
            UseShellExecute = false,
        })!;
        try
        {
            UnixSocketListening.WaitFor(socket, qemuNbd, s_timeout);
            var map = Tools.Run("nbdinfo", ["--map", $"nbd+unix:///?socket={socket}"], dir, s_timeout);
            Assert.True(map.ExitCode == 0, map.ToString());
            return map.StdOut;
        }
        finally
        {
            qemuNbd.Kill();
            qemuNbd.WaitForExit();
        }
    }

    [Fact]
    public void Encrypted_image_is_refused_in_one_line()
    {
        var fixture = Qcow2Fixtures.Get("Q16");
        string before = Tools.Sha256OfFile(fixture.Path);
        var result = ServeProcess.RunToExit(_dir.Path, s_timeout, "-r", "-k", SocketPath, fixture.Path);
        Qcow2Cli.AssertEncryptedRefusal(result);
        Assert.False(File.Exists(SocketPath));
        Assert.Equal(before, Tools.Sha256OfFile(fixture.Path));
    }

    /// <summary>Without -r a qcow2 image is still served, read-only, with one warning line naming why; the file stays unchanged.</summary>
    [Fact]
    public void Without_read_only_the_image_is_exported_read_only_with_a_warning()
    {
        string image = Qcow2Fixtures.CopyTo("Q01", _dir.Path);
        string before = Tools.Sha256OfFile(image);
        string stderr;
        using (var server = ServeProcess.Start(_dir.Path, "-t", "-k", SocketPath, image))
        {
            var info = Tools.Run("nbdinfo", ["--json", Uri], _dir.Path, s_timeout);
            Assert.True(info.ExitCode == 0, info.ToString());
            using (var json = JsonDocument.Parse(info.StdOut))
            {
                Assert.True(json.RootElement.GetProperty("exports")[0].GetProperty("is_read_only").GetBoolean());
            }
            var write = Tools.Run("qemu-io", ["-f", "raw", "-c", "write -P 0x22 0 4k", Uri], _dir.Path, s_timeout);
            Assert.NotEqual(0, write.ExitCode);
            server.Signal(ServeProcess.SigTerm);
            Assert.Equal(0, server.WaitForExit(s_timeout));
            stderr = server.StdErr;
        }
        string warning = Assert.Single(QedCli.Lines(stderr));
        Assert.Equal($"qed: warning: '{image}' is a qcow2 image, which qed serves read-only: exporting it read-only", warning);
        Assert.Equal(before, Tools.Sha256OfFile(image));
    }
}
