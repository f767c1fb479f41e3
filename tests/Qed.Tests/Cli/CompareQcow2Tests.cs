using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed compare</c> with qcow2 on either side against <c>qemu-img compare</c> at test time: exit status, stdout and
/// stderr equal for fixture pairs that are identical (the same data compressed with zlib, zstd and 4 KiB clusters) or
/// differ (an overlay against its backing file, different sizes, snapshots), each fixture against its own flattened raw
/// and QED copies (made by qemu-img), strict mode, and a raw backing file named with <c>-F</c>.
/// </summary>
public sealed class CompareQcow2Tests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string[]> Pairs() => new()
    {
        new[] { "@Q07", "@Q08" },
        new[] { "@Q07", "@Q19" },
        new[] { "@Q09", "@Q09-base" },
        new[] { "-f", "qcow2", "-F", "qcow2", "@Q10", "@Q10-mid" },
        new[] { "@Q10-mid", "@Q10-base" },
        new[] { "@Q01", "@Q13" },
        new[] { "@Q12", "@Q13" },
        new[] { "@Q14", "@Q15" },
        new[] { "@Q06", "@Q18" },
        new[] { "@Q18", "@Q18-base" },
        new[] { "-F", "raw", "@Q11", "@Q11-base.raw" },
        new[] { "@Q02", "@Q05" },
        new[] { "@Q03", "@Q04" },
        new[] { "@Q17", "@Q01" },
    };

    [Theory]
    [MemberData(nameof(Pairs))]
    public void Fixture_pairs_compare_as_with_qemu_img(string[] args) => Qcow2Cli.AssertSame(["compare", .. args]);

    /// <summary>Each fixture equals its raw and QED flattenings (qemu-img's), in both orders, with the formats named or probed.</summary>
    [Theory]
    [MemberData(nameof(Qcow2Cli.Readable), MemberType = typeof(Qcow2Cli))]
    public void Fixture_equals_its_flattened_copies(string name)
    {
        string raw = _dir.File(name + ".raw"), qed = _dir.File(name + ".qed");
        string file = Qcow2Fixtures.Get(name).FileName;
        Tools.QemuImg(Qcow2Fixtures.Directory, "convert", "-f", "qcow2", "-O", "raw", file, raw);
        Tools.QemuImg(Qcow2Fixtures.Directory, "convert", "-f", "qcow2", "-O", "qed", file, qed);
        int compared = 0;
        foreach (string[] args in new[] { new[] { "@" + name, raw }, new[] { raw, "@" + name }, new[] { "-f", "qcow2", "-F", "qed", "@" + name, qed }, new[] { qed, "@" + name } })
        {
            Assert.Equal(0, Qcow2Cli.AssertSame(["compare", .. args]).ExitCode);
            compared++;
        }
        StrictAgreesWithQemu("@" + name, raw);
        StrictAgreesWithQemu(qed, "@" + name);
        Assert.Equal(4, compared);
    }

    public static TheoryData<string, string> StrictPairs() => new()
    {
        { "@Q07", "@Q08" },
        { "@Q08", "@Q19" },
        { "@Q14", "@Q15" },
        { "@Q09", "@Q09-base" },
        { "@Q06", "@Q18" },
        { "@Q01", "@Q13" },
    };

    [Theory]
    [MemberData(nameof(StrictPairs))]
    public void Strict_mode_agrees_with_qemu_img(string a, string b) => StrictAgreesWithQemu(a, b);

    /// <summary>
    /// Strict mode, where qed deliberately leaves out qemu's end-of-file flag (see CompareCommandTests): where qemu-img
    /// finds the images alike or names a content or size mismatch, qed says the same; a block status mismatch of qed is
    /// never before qemu-img's and, when it is not qemu-img's answer, lies where qemu-img map's kinds of the two images first
    /// differ.
    /// </summary>
    private static void StrictAgreesWithQemu(string a, string b)
    {
        var (qemu, ours) = Qcow2Cli.Run("compare", "-s", a, b);
        string where = $"compare -s {a} {b}:\nqemu-img: {qemu}\nqed: {ours}";
        bool qemuStatus = qemu.StdOut.Contains("block status", StringComparison.Ordinal);
        Assert.True(qemuStatus || (qemu.ExitCode == ours.ExitCode && qemu.StdOut == ours.StdOut), where);
        Assert.True(ours.ExitCode is 0 or 1, where);
        if (ours.StdOut == qemu.StdOut && ours.ExitCode == qemu.ExitCode)
        {
            return; // qemu-img's own answer
        }
        if (ours.StdOut.Contains("block status", StringComparison.Ordinal))
        {
            long offset = Offset(ours.StdOut);
            Assert.True(offset >= Offset(qemu.StdOut), where);
            Assert.True(offset == FirstKindDifference(a, b), where);
        }
        else if (ours.ExitCode == 0)
        {
            Assert.True(FirstKindDifference(a, b) == -1, where);
        }
    }

    private static long Offset(string output)
    {
        var match = System.Text.RegularExpressions.Regex.Match(output, @"Offset (\d+)");
        return match.Success ? long.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : -1;
    }

    /// <summary>The first offset where qemu-img map shows the two images allocated differently (present, zero, data, file offset or none), or -1.</summary>
    private static long FirstKindDifference(string a, string b)
    {
        var one = Kinds(a);
        var other = Kinds(b);
        long end = Math.Min(one[^1].End, other[^1].End);
        foreach (long offset in one.Select(k => k.Start).Concat(other.Select(k => k.Start)).Where(o => o < end).Order())
        {
            if (one.First(k => k.Start <= offset && offset < k.End).Kind != other.First(k => k.Start <= offset && offset < k.End).Kind)
            {
                return offset;
            }
        }
        return -1;
    }

    private static List<(long Start, long End, string Kind)> Kinds(string image)
    {
        string dir = Qcow2Fixtures.Directory;
        string path = image.StartsWith('@') ? Qcow2Cli.Resolve(dir, image[1..], relative: true) : image;
        using var json = System.Text.Json.JsonDocument.Parse(Tools.QemuImg(dir, "map", "--output=json", path).StdOut);
        return [.. json.RootElement.EnumerateArray().Select(e =>
        {
            long start = e.GetProperty("start").GetInt64();
            string kind = $"{e.GetProperty("present")}/{e.GetProperty("zero")}/{e.GetProperty("data")}/{e.TryGetProperty("offset", out _)}";
            return (start, start + e.GetProperty("length").GetInt64(), kind);
        })];
    }

    [Fact]
    public void Encrypted_image_is_refused_in_one_line()
    {
        var result = QedCli.Run("compare", Qcow2Fixtures.Get("Q16").Path, Qcow2Fixtures.Get("Q01").Path);
        // compare's "could not open" status is 2 (qemu-img's), the line names the encryption.
        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Single(QedCli.Lines(result.StdErr));
        Assert.Contains("encrypted qcow2 images are not supported", result.StdErr, StringComparison.Ordinal);
    }
}
