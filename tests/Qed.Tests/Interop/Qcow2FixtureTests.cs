using System.Text.Json;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Interop;

/// <summary>The fixtures of QCOW2.md §16 as QEMU builds them here agree with the reference: digests and check figures (§16.2).</summary>
public sealed class Qcow2FixtureTests
{
    public static TheoryData<string> Names() => Qcow2Fixtures.Names();

    /// <summary>19 fixtures, as §16.1 lists them.</summary>
    [Fact]
    public void There_are_nineteen_fixtures()
    {
        Assert.Equal(19, Qcow2Fixtures.All.Count);
        Assert.Equal(Enumerable.Range(1, 19).Select(i => $"Q{i:D2}"), Qcow2Fixtures.All.Select(f => f.Name));
    }

    /// <summary>sha256 of <c>qemu-img convert -O raw</c> (Q16 with its key) equals §16.2's, and qemu-img info's virtual size equals the table's.</summary>
    [Theory]
    [MemberData(nameof(Names))]
    public void Qemu_digest_and_size_equal_the_reference(string name)
    {
        var fixture = Qcow2Fixtures.Get(name);
        string dir = Qcow2Fixtures.Directory;
        using var scratch = new TempDirectory();
        string raw = scratch.File("disk.raw");
        string[] source = fixture.Encrypted ? Qcow2Fixtures.Q16KeyedSource(fixture.FileName) : ["-f", "qcow2", fixture.FileName];
        Tools.QemuImg(dir, ["convert", .. source, "-O", "raw", raw]);
        Assert.Equal(fixture.Digest, Tools.Sha256OfFile(raw));

        using var info = JsonDocument.Parse(Tools.QemuImg(dir, "info", "--output=json", fixture.FileName).StdOut);
        Assert.Equal(fixture.VirtualSize, info.RootElement.GetProperty("virtual-size").GetInt64());
    }

    /// <summary><c>qemu-img check</c> gives §16.2's exit code, corruptions, allocated clusters and image end offset.</summary>
    [Theory]
    [MemberData(nameof(Names))]
    public void Qemu_check_equals_the_reference(string name)
    {
        var fixture = Qcow2Fixtures.Get(name);
        var result = Tools.QemuImgRaw(Qcow2Fixtures.Directory, "check", "--output=json", "-f", "qcow2", fixture.FileName);
        var report = CheckReport.From(result);
        Assert.Equal(fixture.Check.ExitCode, report.ExitCode);
        Assert.Equal(fixture.Check.Corruptions, report.Corruptions);
        Assert.Equal(0, report.Leaks);
        if (fixture.Check.AllocatedClusters is { } allocated)
        {
            Assert.Equal(allocated, report.Allocated);
        }
        if (fixture.Check.ImageEndOffset is { } end)
        {
            using var json = JsonDocument.Parse(result.StdOut);
            Assert.Equal(end, json.RootElement.GetProperty("image-end-offset").GetInt64());
        }
    }

    /// <summary>A copy carries every file of the fixture (backing files too), so it reads like the original.</summary>
    [Fact]
    public void CopyTo_takes_the_backing_chain_along()
    {
        using var dir = new TempDirectory();
        string copy = Qcow2Fixtures.CopyTo("Q10", dir.Path);
        Assert.Equal(["Q10-base.qcow2", "Q10-mid.qcow2", "Q10.qcow2"], Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(Qcow2Fixtures.Get("Q10").Digest, Tools.QemuFlattenDigest(dir.Path, copy, "qcow2"));
    }
}
