using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed convert</c> from qcow2 (named with <c>-f qcow2</c> or probed): every readable fixture of QCOW2.md §16 converted
/// to raw has the reference digest (§16.2), converted to QED it reads back (through qemu-img) with that digest and
/// qemu-img check finds it clean; the encrypted fixture is refused in one line by convert and io, and nothing is changed.
/// </summary>
public sealed class ConvertFromQcow2Tests : IDisposable
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromMinutes(1);
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Runs <c>qed ARGS</c> where the fixture can be read: in-process, or for Q17 (data file relative to the working directory) as a process in the fixture directory.</summary>
    private static ToolResult Qed(string name, params string[] args)
    {
        var result = name == "Q17" ? QedProcess.Run(Qcow2Fixtures.Directory, s_timeout, args) : QedCli.Run(args);
        Assert.True(result.ExitCode == 0, $"qed {string.Join(' ', args)}: {result}");
        return result;
    }

    private static string Source(string name) => name == "Q17" ? "Q17.qcow2" : Qcow2Fixtures.Get(name).Path;

    [Theory]
    [MemberData(nameof(Qcow2Cli.Readable), MemberType = typeof(Qcow2Cli))]
    public void To_raw_gives_the_reference_digest(string name)
    {
        var fixture = Qcow2Fixtures.Get(name);
        string named = _dir.File(name + "-f.raw"), probed = _dir.File(name + "-p.raw");
        Qed(name, "convert", "-f", "qcow2", "-O", "raw", Source(name), named);
        Qed(name, "convert", "-O", "raw", Source(name), probed);
        Assert.Equal(fixture.Digest, Tools.Sha256OfFile(named));
        Assert.Equal(fixture.Digest, Tools.Sha256OfFile(probed));
        Assert.Equal(fixture.VirtualSize, new FileInfo(named).Length);
    }

    [Theory]
    [MemberData(nameof(Qcow2Cli.Readable), MemberType = typeof(Qcow2Cli))]
    public void To_qed_reads_back_with_the_reference_digest_and_checks_clean(string name)
    {
        var fixture = Qcow2Fixtures.Get(name);
        string target = _dir.File(name + ".qed");
        Qed(name, "convert", "-O", "qed", Source(name), target);
        Assert.Equal(fixture.Digest, Tools.QemuFlattenDigest(_dir.Path, target, "qed"));
        var check = Tools.QemuImgRaw(_dir.Path, "check", "-f", "qed", target);
        Assert.True(check.ExitCode == 0, check.ToString());
        // Sparse: no more clusters than qemu-img's own conversion allocates.
        string theirs = _dir.File(name + "-qemu.qed");
        Tools.QemuImg(Qcow2Fixtures.Directory, "convert", "-f", "qcow2", "-O", "qed", fixture.FileName, theirs);
        long ours = CheckReport.From(Tools.QemuImgRaw(_dir.Path, "check", "--output=json", "-f", "qed", target)).Allocated;
        long qemus = CheckReport.From(Tools.QemuImgRaw(_dir.Path, "check", "--output=json", "-f", "qed", theirs)).Allocated;
        Assert.True(ours <= qemus, $"{name}: qed allocated {ours} clusters, qemu-img {qemus}");
    }

    [Fact]
    public void Encrypted_image_is_refused_by_convert_and_io_in_one_line()
    {
        var fixture = Qcow2Fixtures.Get("Q16");
        string before = Tools.Sha256OfFile(fixture.Path);
        Qcow2Cli.AssertEncryptedRefusal(QedCli.Run("convert", "-O", "raw", fixture.Path, _dir.File("out.raw")));
        Qcow2Cli.AssertEncryptedRefusal(QedCli.Run("convert", "-f", "qcow2", "-O", "qed", fixture.Path, _dir.File("out.qed")));
        // Without -r, io asks for a writable image: that refusal (qcow2 opens read-only only) comes first, in one line too.
        var writable = QedCli.Run("io", "-c", "read 0 4k", fixture.Path);
        Assert.Equal(1, writable.ExitCode);
        Assert.Single(QedCli.Lines(writable.StdErr));
        Qcow2Cli.AssertEncryptedRefusal(QedCli.Run("io", "-r", "-f", "qcow2", "-c", "read 0 4k", fixture.Path));
        Assert.Empty(Directory.GetFiles(_dir.Path));
        Assert.Equal(before, Tools.Sha256OfFile(fixture.Path));
    }
}
