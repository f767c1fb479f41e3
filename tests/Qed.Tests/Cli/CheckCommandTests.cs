using System.Text.Json;
using Qed.Check;
using Qed.Cli.Commands.Check;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed check</c> against <c>qemu-img check</c> on the fixtures of QED-FORMAT.md §13 (F13–F23, F29): the same human
/// and JSON output and exit code, except where qed is right and QEMU is not; each such test says why.
/// </summary>
public class CheckCommandTests : IDisposable
{
    private const long K = 1024;
    private const long M = 1024 * K;

    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    // ---- fixtures ----

    private void Img(params string[] args) => Tools.QemuImg(_dir.Path, args);

    private void Io(string path, params string[] commands) => Tools.QemuIo(_dir.Path, "qed", path, commands);

    private static void Truncate(string path, long length)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
        stream.SetLength(length);
    }

    /// <summary>Builds fixture <paramref name="name"/> (e.g. "f16") of QED-FORMAT.md §13 and returns its path.</summary>
    private string Make(string name)
    {
        string path = _dir.File(name + ".qed");
        switch (name)
        {
            case "f01":
                Img("create", "-f", "qed", path, "64M");
                break;
            case "f02":
                Img("create", "-f", "qed", "-o", "cluster_size=4096,table_size=2", path, "16M");
                Io(path, "write -P 0x11 0 4k", "write -P 0x22 6k 1k", "write -P 0x33 1M 12k", "write -P 0x44 16380k 4k");
                break;
            case "f07":
                Img("create", "-f", "raw", _dir.File("f07-base.raw"), "4M");
                Tools.QemuIo(_dir.Path, "raw", _dir.File("f07-base.raw"), "write -P 0xb0 0 4M");
                Img("create", "-f", "qed", "-b", "f07-base.raw", "-F", "raw", path);
                Io(path, "write -P 0xc1 4k 4k", "write -P 0xc2 130k 2k", "write -P 0xc3 1M 64k");
                break;
            case "f30":
                Img("create", "-f", "qed", path, "0");
                break;
            case "f13":
                Img("create", "-f", "qed", path, "16M");
                Io(path, "write -P 0xf1 0 4k");
                Tools.Poke(path, 16, 0x02);
                break;
            case "f14":
                Img("create", "-f", "qed", path, "16M");
                Io(path, "write -P 0x14 0 64k");
                Truncate(path, new FileInfo(path).Length + 64 * K);
                break;
            case "f15":
                Img("create", "-f", "qed", path, "16M");
                Io(path, "write -P 0x15 0 64k", "write -P 0x16 64k 64k");
                Tools.PokeU64(path, 0x60008, 0);
                break;
            case "f16" or "f17" or "f19":
                Img("create", "-f", "qed", path, "16M");
                Io(path, "write -P 0x16 0 64k", "write -P 0x17 64k 64k");
                Tools.PokeU64(path, 0x60008, name switch { "f16" => 0x10000000UL, "f17" => 0xa0200UL, _ => 0x50000UL });
                break;
            case "f18":
                Img("create", "-f", "qed", path, "16M");
                Io(path, "write -P 0x18 0 64k");
                Tools.PokeU64(path, 0x10000, 0x10000000);
                break;
            case "f20":
                Img("create", "-f", "qed", "-o", "cluster_size=4096,table_size=2", path, "16M");
                Io(path, "write -P 0x20 0 4k");
                Tools.PokeU64(path, 0x1008, 0x4000);
                break;
            case "f21":
                Img("create", "-f", "qed", path, "16M");
                Io(path, "write -P 0x21 0 64k", "write -P 0x22 1M 64k");
                Truncate(path, 0xa0000);
                break;
            case "f22":
                Img("create", "-f", "qed", path, "16M");
                Io(path, "write -P 0x22 0 64k");
                Truncate(path, 0x90000);
                break;
            case "f23":
                Img("create", "-f", "qed", path, "16M");
                Truncate(path, 0x30000);
                break;
            case "f29":
                Img("create", "-f", "qed", "-o", "cluster_size=4096", path, "64M");
                Io(path, [.. Enumerable.Range(0, 20).Select(i => $"write -P 0x2a {i}M 1M")]);
                break;
            default:
                throw new ArgumentException(name);
        }
        return path;
    }

    private static string[] ModeArgs(string mode) => mode == "none" ? [] : ["-r", mode];

    /// <summary>
    /// Runs <c>qemu-img check</c> and <c>qed check</c> with the same arguments on the same path, each on a fresh copy of
    /// the fixture (the path is part of the JSON output, and a repair changes the file).
    /// </summary>
    private (ToolResult Qemu, ToolResult Ours) RunBoth(string fixture, params string[] options)
    {
        string path = _dir.File(fixture + ".qed");
        string pristine = path + ".orig";
        if (File.Exists(pristine))
        {
            File.Copy(pristine, path, overwrite: true);
        }
        else
        {
            Make(fixture);
            File.Copy(path, pristine);
        }
        var qemu = Tools.QemuImgRaw(_dir.Path, ["check", .. options, path]);
        File.Copy(pristine, path, overwrite: true);
        var ours = QedCli.Run(["check", .. options, path]);
        return (qemu, ours);
    }

    private static void AssertSame(ToolResult qemu, ToolResult ours)
    {
        Assert.Equal(qemu.StdOut, ours.StdOut);
        Assert.Equal(QedCli.Lines(qemu.StdErr).Select(QedCli.AsQed), QedCli.Lines(ours.StdErr));
        Assert.Equal(qemu.ExitCode, ours.ExitCode);
    }

    // ---- identical to qemu-img ----

    /// <summary>The cases where qed must print exactly what qemu-img prints (nothing to reclaim, or qemu-img's own repair).</summary>
    public static TheoryData<string, string, string> IdenticalCases
    {
        get
        {
            var data = new TheoryData<string, string, string>();
            foreach (string output in new[] { "human", "json" })
            {
                foreach (string fixture in new[] { "f13", "f14", "f15", "f16", "f17", "f18", "f19", "f20", "f21", "f22" })
                {
                    data.Add(fixture, "none", output);
                }
                // F13: dirty but consistent, nothing to fix; F20: duplicated tables are never fixed and nothing leaks;
                // F21: the dangling entry pointed outside the file, so zeroing it leaves no leak behind.
                data.Add("f13", "leaks", output);
                data.Add("f13", "all", output);
                data.Add("f20", "leaks", output);
                data.Add("f20", "all", output);
                data.Add("f21", "all", output);
                // F19: a cluster referenced twice is never fixed, and while a corruption remains no leak is reclaimed.
                data.Add("f19", "leaks", output);
                data.Add("f19", "all", output);
                // Clean images: empty, fragmented 4 KiB clusters, over a backing file, zero-sized.
                foreach (string clean in new[] { "f01", "f02", "f07", "f30" })
                {
                    data.Add(clean, "none", output);
                    data.Add(clean, "all", output);
                }
            }
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(IdenticalCases))]
    public void Output_and_exit_code_match_qemu_img(string fixture, string mode, string output)
    {
        var (qemu, ours) = RunBoth(fixture, [.. ModeArgs(mode), $"--output={output}"]);
        AssertSame(qemu, ours);
    }

    [Fact]
    public void Reports_look_as_documented()
    {
        // A spot check of the wording itself (QED-FORMAT.md §10.3/§10.4), independent of qemu-img.
        var leak = QedCli.Run("check", Make("f14"));
        Assert.Equal(3, leak.ExitCode);
        Assert.Equal("\n1 leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n1/256 = 0.39% allocated, 0.00% fragmented, 0.00% compressed clusters\n", leak.StdOut);

        string f16 = Make("f16");
        var corrupt = QedCli.Run("check", "--output=json", f16);
        Assert.Equal(2, corrupt.ExitCode);
        Assert.Equal($$"""
            {
                "total-clusters": 256,
                "corruptions": 1,
                "check-errors": 0,
                "leaks": 1,
                "allocated-clusters": 2,
                "filename": "{{f16}}",
                "format": "qed",
                "fragmented-clusters": 1
            }

            """.ReplaceLineEndings("\n"), corrupt.StdOut);
    }

    [Fact]
    public void Image_that_cannot_be_opened_exits_1_for_every_mode()
    {
        foreach (string mode in new[] { "none", "leaks", "all" })
        {
            foreach (string output in new[] { "human", "json" })
            {
                var (qemu, ours) = RunBoth("f23", [.. ModeArgs(mode), $"--output={output}"]);
                Assert.Equal(1, qemu.ExitCode);
                Assert.Equal(1, ours.ExitCode);
                Assert.Equal("", ours.StdOut);
                // Our engine adds where the bad offset was found: "QED table offset is invalid (l1_table_offset 0x10000 ...)".
                string line = Assert.Single(QedCli.Lines(ours.StdErr));
                Assert.StartsWith(QedCli.AsQed(qemu.StdErr.TrimEnd('\n')), line, StringComparison.Ordinal);
            }
        }
    }

    // ---- where qed is right and qemu-img is not ----

    [Theory]
    [InlineData("none")]
    [InlineData("leaks")]
    [InlineData("all")]
    public void Spurious_qemu_leak_of_f29_is_not_reported(string mode)
    {
        // QEMU maps file offsets to bitmap indices with a division by (cs - 1) (QED-FORMAT.md §8.4), so on this
        // consistent image it skips one index and reports 1 leaked cluster (exit 3). qed counts exact indices: 0 leaks,
        // exit 0; a repair finds nothing to do, so no summary either.
        var (qemu, ours) = RunBoth("f29", ModeArgs(mode));
        const string spurious = "\n1 leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n";
        Assert.Equal(3, qemu.ExitCode);
        Assert.StartsWith(spurious, qemu.StdOut, StringComparison.Ordinal);
        Assert.Equal("No errors were found on the image.\n" + qemu.StdOut[spurious.Length..], ours.StdOut);
        Assert.Equal("No errors were found on the image.\n5120/16384 = 31.25% allocated, 0.06% fragmented, 0.00% compressed clusters\n", ours.StdOut);
        Assert.Equal(0, ours.ExitCode);

        var (qemuJson, oursJson) = RunBoth("f29", [.. ModeArgs(mode), "--output=json"]);
        Assert.Contains("    \"leaks\": 1,\n", qemuJson.StdOut, StringComparison.Ordinal);
        Assert.Equal(qemuJson.StdOut.Replace("    \"leaks\": 1,\n", "", StringComparison.Ordinal), oursJson.StdOut);
        Assert.Equal(0, oursJson.ExitCode);
    }

    private static string Summary(long leaks, long corruptions) =>
        $"The following inconsistencies were found and repaired:\n\n    {leaks} leaked clusters\n    {corruptions} corruptions\n\nDouble checking the fixed image now...\n";

    private const string OneError = "\n1 errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n";

    /// <summary>
    /// The repairs where qed differs from qemu-img, with qed's expected human output and exit code. qemu-img never
    /// fixes leaks for QED (it has no free-space map); qed truncates leaked clusters at the end of the file, which
    /// nothing references, so no data can be lost; and only when no corruption remains, since an invalid entry may still
    /// point into them. <c>-r leaks</c> repairs leaks only (see <see cref="Leaks_mode_repairs_leaks_only_and_reports_corruptions"/>).
    /// </summary>
    public static TheoryData<string, string, string, int> ReclaimCases => new()
    {
        // Trailing cluster appended / unreferenced data cluster at the end: reclaimed, the image is clean.
        { "f14", "leaks", Summary(1, 0) + "No errors were found on the image.\n1/256 = 0.39% allocated, 0.00% fragmented, 0.00% compressed clusters\n", 0 },
        { "f14", "all", Summary(1, 0) + "No errors were found on the image.\n1/256 = 0.39% allocated, 0.00% fragmented, 0.00% compressed clusters\n", 0 },
        { "f15", "leaks", Summary(1, 0) + "No errors were found on the image.\n1/256 = 0.39% allocated, 0.00% fragmented, 0.00% compressed clusters\n", 0 },
        { "f15", "all", Summary(1, 0) + "No errors were found on the image.\n1/256 = 0.39% allocated, 0.00% fragmented, 0.00% compressed clusters\n", 0 },
        // Invalid L2 entry: -r all zeroes it (as QEMU) and also reclaims the data cluster it orphaned (QEMU: 1 leak, exit 3).
        { "f16", "all", Summary(1, 1) + "No errors were found on the image.\n1/256 = 0.39% allocated, 0.00% fragmented, 0.00% compressed clusters\n", 0 },
        { "f17", "all", Summary(1, 1) + "No errors were found on the image.\n1/256 = 0.39% allocated, 0.00% fragmented, 0.00% compressed clusters\n", 0 },
        // Invalid L1 entry: its table and data are the last 5 clusters (QEMU: 5 leaks remain, exit 3).
        { "f18", "all", Summary(5, 1) + "No errors were found on the image.\n", 0 },
        // Truncated L2 table: the data cluster and the 3 surviving table clusters are the last 4 (QEMU: 4 leaks remain).
        { "f22", "all", Summary(4, 1) + "No errors were found on the image.\n", 0 },
    };

    /// <summary>
    /// <c>-r leaks</c> as qemu-img documents it ("repairs only cluster leaks"): on an image with corruptions nothing is
    /// fixed and nothing changes on disk (leaks are reclaimed only while no corruption remains), so the report is
    /// qemu-img's plain check, exit 2. qemu-img's QED driver instead fixes the corruptions for <c>-r leaks</c> too
    /// (QED-FORMAT.md §8.3): its counters show them fixed and it exits 0 or 3; ours count them as found.
    /// </summary>
    [Theory]
    [InlineData("f16")]
    [InlineData("f17")]
    [InlineData("f18")]
    [InlineData("f21")]
    [InlineData("f22")]
    public void Leaks_mode_repairs_leaks_only_and_reports_corruptions(string fixture)
    {
        var (plainQemu, _) = RunBoth(fixture, "--output=json");
        string path = _dir.File(fixture + ".qed");
        string before = QedCli.Fingerprint(path);
        var (qemu, ours) = RunBoth(fixture, "-r", "leaks", "--output=json");

        Assert.Equal(before, QedCli.Fingerprint(path));
        Assert.Equal(plainQemu.StdOut, ours.StdOut);
        Assert.Equal(2, ours.ExitCode);
        using var ourJson = JsonDocument.Parse(ours.StdOut);
        using var qemuJson = JsonDocument.Parse(qemu.StdOut);
        long Count(JsonDocument json, string key) => json.RootElement.TryGetProperty(key, out var value) ? value.GetInt64() : 0;
        // The same corruptions: qemu-img fixed them under -r leaks, we only report them.
        Assert.True(Count(qemuJson, "corruptions-fixed") > 0, qemu.StdOut);
        Assert.Equal(Count(qemuJson, "corruptions-fixed"), Count(ourJson, "corruptions"));
        Assert.Equal(0, Count(ourJson, "corruptions-fixed"));
        Assert.Equal(0, Count(ourJson, "leaks-fixed"));
        Assert.Equal(0, Count(qemuJson, "leaks-fixed"));
        Assert.Contains(qemu.ExitCode, new[] { 0, 3 });

        // -r all fixes them (and, beyond qemu-img, reclaims the leaks they leave at the end of the file).
        var all = QedCli.Run("check", "-r", "all", "--output=json", path);
        using var allJson = JsonDocument.Parse(all.StdOut);
        Assert.Equal(Count(ourJson, "corruptions"), Count(allJson, "corruptions-fixed"));
        Assert.Equal(0, Count(allJson, "corruptions"));
    }

    [Theory]
    [MemberData(nameof(ReclaimCases))]
    public void Repair_reclaims_trailing_leaks_that_qemu_img_keeps(string fixture, string mode, string expected, int exitCode)
    {
        var (qemu, ours) = RunBoth(fixture, ModeArgs(mode));
        Assert.Equal(expected, ours.StdOut);
        Assert.Equal("", ours.StdErr);
        Assert.Equal(exitCode, ours.ExitCode);
        // qemu-img leaves leaks behind in every one of these cases (or, for -r leaks, fixes what -r leaks should not).
        Assert.NotEqual(qemu.StdOut, ours.StdOut);
        Assert.DoesNotContain("leaked clusters were found", ours.StdOut, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(ReclaimCases))]
    public void Json_after_a_repair_carries_the_fixed_counts_as_qemu_img_does(string fixture, string mode, string expected, int exitCode)
    {
        _ = expected;
        var (qemu, ours) = RunBoth(fixture, [.. ModeArgs(mode), "--output=json"]);
        Assert.Equal(exitCode, ours.ExitCode);
        using var ourJson = JsonDocument.Parse(ours.StdOut);
        using var qemuJson = JsonDocument.Parse(qemu.StdOut);
        var keys = ourJson.RootElement.EnumerateObject().Select(p => p.Name).ToList();
        // qemu-img's key order, whichever keys are present.
        string[] order = ["total-clusters", "corruptions", "corruptions-fixed", "check-errors", "leaks", "leaks-fixed", "allocated-clusters", "filename", "format", "fragmented-clusters"];
        Assert.Equal(order.Where(keys.Contains), keys);
        // Like qemu-img, the report is the second check plus the first run's fixed counts; our repair reclaimed leaks,
        // so "leaks-fixed" is there and "leaks" is gone.
        Assert.True(ourJson.RootElement.TryGetProperty("leaks-fixed", out var leaksFixed) && leaksFixed.GetInt64() > 0);
        Assert.False(ourJson.RootElement.TryGetProperty("leaks", out _));
        Assert.Equal(qemuJson.RootElement.GetProperty("filename").GetString(), ourJson.RootElement.GetProperty("filename").GetString());
        Assert.Equal(qemuJson.RootElement.GetProperty("total-clusters").GetInt64(), ourJson.RootElement.GetProperty("total-clusters").GetInt64());
        bool corrupt = ourJson.RootElement.TryGetProperty("corruptions", out var corruptions) && corruptions.GetInt64() > 0;
        Assert.Equal(exitCode == 2, corrupt);
    }

    /// <summary>Each fixture and repair mode: qemu-img must find no more problems after our repair, and every cluster of the disk readable before reads the same after.</summary>
    public static TheoryData<string, string> RepairCases
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (string fixture in new[] { "f13", "f14", "f15", "f16", "f17", "f18", "f19", "f20", "f21", "f22", "f29" })
            {
                data.Add(fixture, "leaks");
                data.Add(fixture, "all");
            }
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(RepairCases))]
    public void Repair_keeps_readable_data_and_leaves_no_more_problems_for_qemu_img(string fixture, string mode)
    {
        string path = Make(fixture);
        var (corruptionsBefore, leaksBefore) = QemuCounts(path);
        var before = ReadClusters(path);

        var result = QedCli.Run("check", "-r", mode, path);
        Assert.True(result.ExitCode is 0 or 2 or 3, result.ToString());

        var (corruptionsAfter, leaksAfter) = QemuCounts(path);
        Assert.True(corruptionsAfter <= corruptionsBefore, $"corruptions {corruptionsBefore} -> {corruptionsAfter}");
        Assert.True(leaksAfter <= leaksBefore, $"leaks {leaksBefore} -> {leaksAfter}");
        var after = ReadClusters(path);
        foreach (var (offset, digest) in before)
        {
            if (digest is not null)
            {
                Assert.Equal(digest, after.Single(a => a.Offset == offset).Digest);
            }
        }
        if (corruptionsAfter == 0)
        {
            // QEMU reads the whole repaired disk; where we could read before, it sees the same bytes.
            string raw = _dir.File("flat.raw");
            Img("convert", "-f", "qed", "-O", "raw", path, raw);
            byte[] flat = File.ReadAllBytes(raw);
            int chunk = before.Count > 1 ? (int)(before[1].Offset - before[0].Offset) : flat.Length;
            foreach (var (offset, digest) in before)
            {
                if (digest is not null)
                {
                    Assert.Equal(digest, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(flat.AsSpan((int)offset, chunk))));
                }
            }
        }
    }

    private (long Corruptions, long Leaks) QemuCounts(string path)
    {
        var json = Tools.QemuImgRaw(_dir.Path, "check", "--output=json", path);
        using var document = JsonDocument.Parse(json.StdOut);
        long Get(string key) => document.RootElement.TryGetProperty(key, out var value) ? value.GetInt64() : 0;
        return (Get("corruptions"), Get("leaks"));
    }

    /// <summary>sha256 of every cluster-sized piece of the virtual disk, or null where the read fails (read-only open: no repair).</summary>
    private static List<(long Offset, string? Digest)> ReadClusters(string path)
    {
        using var image = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        int chunk = image.Geometry.ClusterSize;
        var buffer = new byte[chunk];
        var digests = new List<(long, string?)>();
        for (long offset = 0; offset < image.Size; offset += chunk)
        {
            try
            {
                image.Read(buffer, offset);
                digests.Add((offset, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(buffer))));
            }
            catch (IOException)
            {
                digests.Add((offset, null));
            }
        }
        return digests;
    }

    // ---- read-only check, need-check bit ----

    [Fact]
    public void Check_without_repair_leaves_the_need_check_bit_and_every_byte()
    {
        string path = Make("f13");
        string before = QedCli.Fingerprint(path);
        var result = QedCli.Run("check", path);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("No errors were found on the image.\n1/256 = 0.39% allocated, 0.00% fragmented, 0.00% compressed clusters\n", result.StdOut);
        Assert.Equal(before, QedCli.Fingerprint(path));
        Assert.Equal(0x02, File.ReadAllBytes(path)[16] & 0x02);
    }

    [Theory]
    [InlineData("f14")]
    [InlineData("f16")]
    [InlineData("f18")]
    [InlineData("f22")]
    public void Check_without_repair_changes_nothing(string fixture)
    {
        string path = Make(fixture);
        string before = QedCli.Fingerprint(path);
        QedCli.Run("check", path);
        QedCli.Run("check", "--output=json", path);
        Assert.Equal(before, QedCli.Fingerprint(path));
    }

    [Fact]
    public void Repair_clears_the_need_check_bit_as_qemu_img_does()
    {
        string theirs = Make("f13");
        string ours = _dir.File("ours.qed");
        File.Copy(theirs, ours);
        Tools.QemuImg(_dir.Path, "check", "-r", "all", theirs);
        QedCli.Ok("check", "-r", "all", ours);
        Assert.Equal(0, File.ReadAllBytes(ours)[16] & 0x02);
        Assert.Equal(File.ReadAllBytes(theirs), File.ReadAllBytes(ours));
    }

    // ---- quiet, raw, arguments ----

    [Theory]
    [InlineData("f14", "human")]
    [InlineData("f14", "json")]
    [InlineData("f16", "human")]
    [InlineData("f13", "json")]
    public void Quiet_prints_nothing_but_keeps_the_exit_code(string fixture, string output)
    {
        var (qemu, ours) = RunBoth(fixture, "-q", $"--output={output}");
        Assert.Equal("", qemu.StdOut);
        AssertSame(qemu, ours);
    }

    [Fact]
    public void Quiet_repair_prints_nothing()
    {
        var result = QedCli.Run("check", "-q", "-r", "all", Make("f16"));
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("", result.StdOut);
        Assert.Equal("", result.StdErr);
    }

    [Theory]
    [InlineData("")]
    [InlineData("-f raw")]
    [InlineData("--output=json")]
    [InlineData("-q")]
    [InlineData("-f raw -r all")]
    public void Raw_images_have_no_check_exit_63(string optionText)
    {
        string[] options = optionText.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        string path = _dir.File("disk.raw");
        Img("create", "-f", "raw", path, "1M");
        var qemu = Tools.QemuImgRaw(_dir.Path, ["check", .. options, path]);
        var ours = QedCli.Run(["check", .. options, path]);
        Assert.Equal(63, qemu.ExitCode);
        AssertSame(qemu, ours);
        Assert.Equal("qed: This image format does not support checks\n", ours.StdErr);
    }

    [Theory]
    [InlineData("")]
    [InlineData("a.qed b.qed")]
    [InlineData("-r foo f.qed")]
    [InlineData("-r foo")]
    [InlineData("--output=xml f.qed")]
    [InlineData("--output=xml")]
    [InlineData("-T foo f.qed")]
    [InlineData("-T foo --output=xml f.qed")]
    [InlineData("-x f.qed")]
    [InlineData("-r")]
    [InlineData("-r all -U f.qed")]
    public void Argument_errors_match_qemu_img(string argumentText)
    {
        string[] args = argumentText.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        string path = Make("f14");
        string[] arguments = [.. args.Select(a => a == "f.qed" ? path : a)];
        var qemu = Tools.QemuImgRaw(_dir.Path, ["check", .. arguments]);
        var ours = QedCli.Run(["check", .. arguments]);
        Assert.Equal(1, qemu.ExitCode);
        AssertSame(qemu, ours);
    }

    [Fact]
    public void Missing_file_is_one_line_and_exit_1()
    {
        var result = QedCli.Run("check", _dir.File("nope.qed"));
        Assert.Equal(1, result.ExitCode);
        Assert.Equal("", result.StdOut);
        Assert.Equal($"qed: Could not open '{_dir.File("nope.qed")}': No such file or directory\n", result.StdErr);
    }

    [Fact]
    public void Accepts_the_options_qemu_img_accepts()
    {
        string path = Make("f14");
        var expected = QedCli.Run("check", path);
        foreach (string[] options in new[]
        {
            new[] { "-f", "qed" }, ["--format=qed"], ["-T", "none"], ["-T", "writeback"], ["-U"], ["--force-share"],
            ["--output", "human"], ["--l2-cache-size=64k"], ["--l2-cache-size", "1M"], ["--l2-cache-size=0"],
        })
        {
            var result = QedCli.Run(["check", .. options, path]);
            Assert.Equal(expected, result);
        }
        var repair = QedCli.Run("check", "--repair=leaks", path);
        Assert.Equal(0, repair.ExitCode);
    }

    [Theory]
    [InlineData("x", "qed: Invalid L2 cache size specified. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n")]
    [InlineData("-1", "qed: Invalid L2 cache size specified. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n")]
    [InlineData("9E", "qed: Invalid L2 cache size specified. Must be between 0 and 9223372036854775807.\n")]
    public void Bad_l2_cache_size_is_one_line(string value, string error)
    {
        var result = QedCli.Run("check", $"--l2-cache-size={value}", Make("f14"));
        Assert.Equal(1, result.ExitCode);
        Assert.Equal("", result.StdOut);
        Assert.Equal(error, result.StdErr);
    }

    [Fact]
    public void Tiny_l2_cache_gives_the_same_report()
    {
        string path = _dir.File("many.qed");
        Img("create", "-f", "qed", "-o", "cluster_size=4096,table_size=1", path, "64M");
        // table_size=1 images cannot be opened by QEMU 7.2 (F06), so write them with qed itself.
        QedCli.Ok("io", "-c", "write -P 1 0 1M", "-c", "write -P 2 20M 1M", "-c", "write -P 3 63M 1M", path);
        var reference = QedCli.Ok("check", "--output=json", path);
        var tiny = QedCli.Ok("check", "--output=json", "--l2-cache-size=512", path);
        Assert.Equal(reference.StdOut, tiny.StdOut);
    }

    // ---- the formatter on its own ----

    [Fact]
    public void Internal_errors_are_reported_after_the_problems()
    {
        var writer = new StringWriter { NewLine = "\n" };
        CheckReportWriter.WriteHuman(writer, new CheckResult { TotalClusters = 16, AllocatedClusters = 3, FragmentedClusters = 1, Corruptions = 2, Leaks = 4, CheckErrors = 1 });
        Assert.Equal(
            "\n2 errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n" +
            "\n4 leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n" +
            "\n1 internal errors have occurred during the check.\n" +
            "3/16 = 18.75% allocated, 33.33% fragmented, 0.00% compressed clusters\n", writer.ToString());
    }

    [Fact]
    public void Statistics_need_both_total_and_allocated_clusters()
    {
        var writer = new StringWriter { NewLine = "\n" };
        CheckReportWriter.WriteHuman(writer, new CheckResult { TotalClusters = 1024 });
        CheckReportWriter.WriteHuman(writer, new CheckResult { AllocatedClusters = 5 });
        Assert.Equal("No errors were found on the image.\nNo errors were found on the image.\n", writer.ToString());

        var json = new StringWriter { NewLine = "\n" };
        CheckReportWriter.WriteJson(json, "z.qed", "qed", new CheckResult());
        Assert.Equal("{\n    \"check-errors\": 0,\n    \"filename\": \"z.qed\",\n    \"format\": \"qed\"\n}\n", json.ToString());
    }

    [Theory]
    [InlineData(1, 800, "0.12")] // 0.125 exactly: glibc rounds the tie to even
    [InlineData(3, 800, "0.38")] // 0.375 exactly
    [InlineData(1, 3, "33.33")]
    [InlineData(2, 3, "66.67")]
    [InlineData(5120, 16384, "31.25")]
    [InlineData(1, 256, "0.39")]
    [InlineData(7, 7, "100.00")]
    [InlineData(1, 4096, "0.02")]
    [InlineData(1, 1 << 30, "0.00")]
    [InlineData(2000001, 2, "100000050.00")]
    public void Percentages_are_rounded_as_printf_does(long part, long whole, string expected)
    {
        Assert.Equal(expected, CheckReportWriter.FormatPercent(part * 100.0 / whole));
        var printf = Tools.Run("printf", ["%.2f", (part * 100.0 / whole).ToString("R", System.Globalization.CultureInfo.InvariantCulture)]);
        Assert.Equal(expected, printf.StdOut);
    }
}
