using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Qed.Cli.Commands;
using Qed.Cli.Commands.Compare;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed compare</c> against <c>qemu-img compare</c> run at test time on the same images: stdout, stderr and exit status
/// on hand-made cases (a mismatch inside a cluster, at offset 0, in the longer image's tail, QED against raw, a chain
/// against its flattened copy, zero clusters against written zeros, strict mode), on seeded random images, and on the
/// refusals; strict mode where qemu-img's end-of-file flag makes it differ, side by side; and that ranges both maps show as
/// zeros are not read (two 1 TiB images).
/// </summary>
public sealed partial class CompareCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Qed(string name, string size, params string[] commands) => Image("qed", name, size, commands);

    private string Raw(string name, string size, params string[] commands) => Image("raw", name, size, commands);

    private string Image(string format, string name, string size, string[] commands, params string[] createOptions)
    {
        string path = _dir.File(name);
        Tools.QemuImg(_dir.Path, ["create", "-q", "-f", format, .. createOptions, path, size]);
        if (commands.Length > 0)
        {
            Tools.QemuIo(_dir.Path, format, path, commands);
        }
        return path;
    }

    private string Overlay(string name, string backing, string backingFormat, string size, params string[] commands)
    {
        string path = _dir.File(name);
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-b", Path.GetFileName(backing), "-F", backingFormat, path, size);
        if (commands.Length > 0)
        {
            Tools.QemuIo(_dir.Path, "qed", path, commands);
        }
        return path;
    }

    private string Flatten(string image, string name)
    {
        string path = _dir.File(name);
        Tools.QemuImg(_dir.Path, "convert", "-O", "raw", image, path);
        return path;
    }

    /// <summary>Runs qemu-img compare and qed compare with the same arguments; exit status, stdout and stderr must agree.</summary>
    private static ToolResult AssertSameAsQemu(string directory, params string[] args)
    {
        string[] command = ["compare", .. args];
        var qemu = Tools.QemuImgRaw(directory, command);
        var ours = QedCli.Run(command);
        string qemuErr = string.Concat(QedCli.Lines(qemu.StdErr).Select(line => QedCli.AsQed(line) + "\n"));
        // qemu-img names a file it cannot open twice ("Could not open 'F': Could not open 'F': ..."); qed once.
        qemuErr = DoubledOpen().Replace(qemuErr, "$1");
        string where = $"compare {string.Join(' ', args)}:\nqemu-img: {qemu}\nqed: {ours}";
        Assert.True(qemu.ExitCode == ours.ExitCode, where);
        Assert.True(qemu.StdOut == ours.StdOut, where);
        Assert.True(qemuErr == ours.StdErr, where);
        return ours;
    }

    [Fact]
    public void Answers_equal_qemu_img_s_on_hand_made_cases()
    {
        string empty = Qed("empty.qed", "1M");
        string empty2 = Qed("empty2.qed", "1M");
        string data = Qed("data.qed", "1M", "write -P 1 0 128k");
        string insideCluster = Qed("inside.qed", "1M", "write -P 1 0 128k", "write -P 2 70000 3000");
        string firstSector = Qed("first.qed", "1M", "write -P 1 0 128k", "write -P 2 0 3000");
        string secondSector = Qed("second.qed", "1M", "write -P 1 0 128k", "write -P 2 512 1");
        string lastByte = Qed("last.qed", "1M", "write -P 1 0 128k", "write -P 9 1048575 1");
        string oneByte = Qed("onebyte.qed", "1M", "write -P 1 100000 1");
        string longZeroTail = Qed("long.qed", "2M", "write -P 1 0 128k");
        string longDirtyTail = Qed("dirty.qed", "2M", "write -P 1 0 128k", "write -P 3 1500000 1");
        string longZeroClusters = Qed("longz.qed", "2M", "write -P 1 0 128k", "write -z 1M 1M");
        string zeroCluster = Qed("zc.qed", "1M", "write -z 0 64k");
        string writtenZeros = Qed("wz.qed", "1M", "write -P 0 0 64k");
        string cluster1 = Qed("c1.qed", "1M", "write -P 5 64k 64k");
        string cluster1Again = Qed("c1b.qed", "1M", "write -P 5 64k 64k");
        string cluster1Longer = Qed("c1c.qed", "1M", "write -P 5 64k 64k", "write -P 0 128k 64k");
        string dataRaw = Flatten(data, "data.raw");
        string baseRaw = Raw("base.raw", "4M", "write -P 1 0 1M", "write -P 7 3M 4k");
        string chain = Overlay("chain.qed", baseRaw, "raw", "8M", "write -P 2 512k 64k", "write -z 3M 1M");
        string chainFlat = Flatten(chain, "chain.raw");
        string middle = Overlay("mid.qed", chain, "qed", "8M", "write -P 4 6M 8k");
        string middleFlat = Flatten(middle, "mid.raw");
        string shortBase = Qed("sb.qed", "1M", "write -P 1 0 64k");
        string overShort = Overlay("os.qed", shortBase, "qed", "2M");
        string flatShort = Qed("fs.qed", "2M", "write -P 1 0 64k");
        string unaligned = _dir.File("u.raw");
        File.WriteAllBytes(unaligned, [.. new byte[999], 1]);
        string aligned = Raw("a.raw", "1024");
        string holeRaw = Raw("h.raw", "1M");

        (string A, string B, bool Strict)[] cases =
        [
            (empty, empty2, true),
            (data, insideCluster, true),
            (data, firstSector, true),
            (data, secondSector, true),
            (data, lastByte, false),
            (empty, oneByte, false),
            (data, longZeroTail, false),
            (longZeroTail, data, false),
            (data, longDirtyTail, false),
            (longDirtyTail, data, false),
            (data, longZeroClusters, false),
            (data, longZeroTail, true),
            (zeroCluster, empty, true),
            (zeroCluster, writtenZeros, true),
            (writtenZeros, empty, false),
            (cluster1, cluster1Again, true),
            (cluster1, cluster1Longer, true),
            (cluster1, cluster1Longer, false),
            (data, dataRaw, false),
            (dataRaw, dataRaw, true),
            (chain, chainFlat, false),
            (middle, middleFlat, false),
            (middleFlat, middle, false),
            (middle, chainFlat, false),
            (overShort, flatShort, false),
            (overShort, flatShort, true),
            (unaligned, aligned, false),
            (aligned, unaligned, false),
            (holeRaw, empty, false),
            (holeRaw, empty, true),
        ];
        int compared = 0;
        foreach (var (a, b, strict) in cases)
        {
            string[] args = strict ? ["-s", a, b] : [a, b];
            AssertSameAsQemu(_dir.Path, args);
            AssertSameAsQemu(_dir.Path, ["-q", .. args]);
            compared++;
        }
        Assert.Equal(cases.Length, compared);
    }

    [Fact]
    public void Offsets_name_the_first_differing_sector_as_qemu_img_does()
    {
        // A byte of difference at 100000 is reported at the start of its sector, 99840, by both.
        string a = Qed("a.qed", "1M", "write -P 1 0 128k");
        string b = Qed("b.qed", "1M", "write -P 1 0 128k", "write -P 2 100000 1");
        var ours = AssertSameAsQemu(_dir.Path, a, b);
        Assert.Equal("Content mismatch at offset 99840!\n", ours.StdOut);
        Assert.Equal(1, ours.ExitCode);
    }

    [Theory]
    [InlineData("@a.qed")]
    [InlineData("@a.qed", "@b.qed", "@a.qed")]
    [InlineData()]
    [InlineData("-x", "@a.qed", "@b.qed")]
    [InlineData("@a.qed", "-f")]
    [InlineData("@a.qed", "@missing.qed")]
    [InlineData("@missing.qed", "@a.qed")]
    [InlineData("-q", "@a.qed", "@missing.qed")]
    [InlineData("-T", "foo", "@a.qed", "@b.qed")]
    [InlineData("-T", "none", "@a.qed", "@b.qed")]
    [InlineData("-U", "-T", "writeback", "@a.qed", "@b.qed")]
    [InlineData("-f", "qed", "-F", "raw", "@a.qed", "@b.qed")]
    [InlineData("-f", "raw", "@a.qed", "@b.qed")]
    [InlineData("--force-share", "-p", "-q", "@a.qed", "@b.qed")]
    public void Refusals_and_options_are_qemu_img_s(params string[] template)
    {
        Qed("a.qed", "1M", "write -P 1 0 4k");
        Qed("b.qed", "1M", "write -P 1 0 4k");
        string[] args = [.. template.Select(a => a.Replace("@", _dir.Path + "/", StringComparison.Ordinal))];
        AssertSameAsQemu(_dir.Path, args);
    }

    [Fact]
    public void A_format_qed_cannot_read_fails_with_exit_2()
    {
        string a = Qed("a.qed", "1M");
        var qemu = Tools.QemuImgRaw(_dir.Path, "compare", "-f", "vmdk", a, a);
        var ours = QedCli.Run("compare", "-f", "vmdk", a, a);
        Assert.Equal(2, qemu.ExitCode);
        Assert.Equal(2, ours.ExitCode);
        Assert.StartsWith($"qed: Could not open '{a}': ", ours.StdErr, StringComparison.Ordinal);
    }

    [Fact]
    public void Unreadable_allocation_exits_3_as_qemu_img()
    {
        // An L1 entry pointing past the end of the file: qemu-img reports the status failure with exit 3; qed says why too.
        string bad = Qed("bad.qed", "1M");
        Tools.PokeU64(bad, 65536, 0x1000_0000);
        string good = Qed("good.qed", "1M");
        foreach (string[] args in new[] { new[] { bad, good }, [good, bad] })
        {
            var qemu = Tools.QemuImgRaw(_dir.Path, ["compare", .. args]);
            var ours = QedCli.Run(["compare", .. args]);
            Assert.Equal(3, qemu.ExitCode);
            Assert.Equal(3, ours.ExitCode);
            Assert.Equal(qemu.StdOut, ours.StdOut);
            Assert.StartsWith(QedCli.AsQed(QedCli.Lines(qemu.StdErr)[0]) + ": ", ours.StdErr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Progress_is_printed_as_qemu_img_prints_it()
    {
        string a = Qed("a.qed", "1M", "write -P 1 0 128k");
        string b = Qed("b.qed", "2M", "write -P 1 0 128k", "write -P 3 1500000 1");
        string c = Qed("c.qed", "1M", "write -P 1 0 128k");

        // A mismatch in the longer image's tail: byte for byte qemu-img's output, progress lines included.
        var mismatch = AssertSameAsQemu(_dir.Path, "-p", a, b);
        Assert.Contains("    (0.00/100%)\r", mismatch.StdOut, StringComparison.Ordinal);

        // Identical: qed ends the progress line with 100% before the verdict, where qemu-img lets the verdict overwrite it.
        var qemu = Tools.QemuImgRaw(_dir.Path, "compare", "-p", a, c);
        var ours = QedCli.Run("compare", "-p", a, c);
        Assert.Equal(0, ours.ExitCode);
        Assert.StartsWith("    (0.00/100%)\r", ours.StdOut, StringComparison.Ordinal);
        Assert.EndsWith("    (100.00/100%)\r\nImages are identical.\n", ours.StdOut, StringComparison.Ordinal);
        Assert.Equal(WithoutProgress(qemu.StdOut), WithoutProgress(ours.StdOut));
        Assert.Equal("", QedCli.Run("compare", "-p", "-q", a, c).StdOut);
    }

    [Fact]
    public void Progress_moves_inside_one_long_data_extent()
    {
        // 64 MiB of data in one extent on each side: progress is reported per 2 MiB read, not only at the extent's end.
        string a = Qed("a.qed", "64M", "write -P 1 0 64M");
        string b = Qed("b.qed", "64M", "write -P 1 0 64M");
        var ours = QedCli.Run("compare", "-p", a, b);
        Assert.Equal(0, ours.ExitCode);
        int lines = ProgressLine().Matches(ours.StdOut).Count;
        Assert.True(lines >= 10, $"{lines} progress lines: {ours.StdOut}");
    }

    private static string WithoutProgress(string output) => ProgressLine().Replace(output, "").Replace("\n\n", "\n", StringComparison.Ordinal).TrimStart('\n');

    [Fact]
    public void Strict_mode_ignores_qemu_s_end_of_file_flag()
    {
        // qemu-img's strict mode compares the raw block status, end-of-file flag included: a run that reaches the end of
        // the image differs from one that does not, even where both images are allocated alike. qed compares allocation
        // alone. The oracle for our answer is qemu-img map: the first offset where the two maps' kinds differ.
        string unallocated = Qed("u.qed", "1M");
        string cluster1 = Qed("c1.qed", "1M", "write -P 1 64k 64k");
        string contiguous = Qed("contig.qed", "128k", "write -P 1 0 128k");
        string split = Qed("split.qed", "128k", "write -P 1 64k 64k", "write -P 1 0 64k");

        var qemu = Tools.QemuImgRaw(_dir.Path, "compare", "-s", unallocated, cluster1);
        Assert.Equal("Strict mode: Offset 0 block status mismatch!\n", qemu.StdOut);
        var ours = QedCli.Run("compare", "-s", unallocated, cluster1);
        Assert.Equal("Strict mode: Offset 65536 block status mismatch!\n", ours.StdOut);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal(65536, FirstKindDifference(unallocated, cluster1));

        qemu = Tools.QemuImgRaw(_dir.Path, "compare", "-s", contiguous, split);
        Assert.Equal("Strict mode: Offset 0 block status mismatch!\n", qemu.StdOut);
        ours = QedCli.Run("compare", "-s", contiguous, split);
        Assert.Equal("Images are identical.\n", ours.StdOut);
        Assert.Equal(0, ours.ExitCode);
        Assert.Equal(-1, FirstKindDifference(contiguous, split));

        // An overlay over a raw base against its flattened raw copy: the copy's last hole runs to the end of the image
        // (end-of-file flag) while the base's hole under the overlay does not, so qemu-img stops there; qed goes on to the
        // real difference, the overlay's zero clusters where the copy has a hole.
        string baseRaw = Raw("base.raw", "4M", "write -P 1 0 1M");
        string chain = Overlay("chain.qed", baseRaw, "raw", "8M", "write -P 2 512k 64k", "write -z 3M 1M");
        string chainFlat = Flatten(chain, "chain.raw");
        qemu = Tools.QemuImgRaw(_dir.Path, "compare", "-s", chain, chainFlat);
        Assert.Equal("Strict mode: Offset 1048576 block status mismatch!\n", qemu.StdOut);
        ours = QedCli.Run("compare", "-s", chain, chainFlat);
        Assert.Equal("Strict mode: Offset 3145728 block status mismatch!\n", ours.StdOut);
        Assert.Equal(3145728, FirstKindDifference(chain, chainFlat));
    }

    [Fact]
    public void Seeded_random_images_get_qemu_img_s_answers()
    {
        int seed = TestSeed.For(nameof(Seeded_random_images_get_qemu_img_s_answers));
        var random = new Random(seed);
        const int Pairs = 16;
        int compared = 0;
        int mismatches = 0;
        for (int pair = 0; pair < Pairs; pair++)
        {
            long clusters = random.Next(4, 33);
            string a = Qed($"r{pair}a.qed", $"{clusters * 64}k", RandomWrites(random, clusters, random.Next(1, 8)));
            string b = _dir.File($"r{pair}b.qed");
            string bFormat = "qed";
            switch (random.Next(4))
            {
                case 0:
                    // A copy with a few changes, some of which may change nothing.
                    File.Copy(a, b);
                    Tools.QemuIo(_dir.Path, "qed", b, RandomWrites(random, clusters, random.Next(1, 3)));
                    break;
                case 1:
                    // The flattened raw copy, then a change or none.
                    b = Flatten(a, $"r{pair}b.raw");
                    bFormat = "raw";
                    string[] changes = RandomWrites(random, clusters, random.Next(0, 2));
                    if (changes.Length > 0)
                    {
                        Tools.QemuIo(_dir.Path, "raw", b, changes);
                    }
                    break;
                case 2:
                    // Independent images of another size.
                    long otherClusters = random.Next(4, 33);
                    b = Qed($"r{pair}b.qed", $"{otherClusters * 64}k", RandomWrites(random, otherClusters, random.Next(1, 8)));
                    break;
                default:
                    // An overlay over a, changed a little: same disk unless a change differs from what a shows.
                    b = Overlay($"r{pair}b.qed", a, "qed", $"{clusters * 64}k", RandomWrites(random, clusters, random.Next(0, 3)));
                    break;
            }

            var answer = AssertSameAsQemu(_dir.Path, a, b);
            mismatches += answer.ExitCode;

            // Strict mode: where qemu-img finds the images alike, so does qed; qed's mismatch is never before qemu-img's
            // (qemu-img's end-of-file flag adds mismatches, see above), and a status mismatch is where qemu-img map's differ.
            var qemuStrict = Tools.QemuImgRaw(_dir.Path, "compare", "-s", "-F", bFormat, a, b);
            var oursStrict = QedCli.Run("compare", "-s", "-F", bFormat, a, b);
            string where = $"seed {seed}, pair {pair}:\nqemu-img: {qemuStrict}\nqed: {oursStrict}";
            Assert.True(qemuStrict.ExitCode != 0 || oursStrict.StdOut == qemuStrict.StdOut, where);
            Assert.True(oursStrict.ExitCode != 0 || qemuStrict.ExitCode == 0 || qemuStrict.StdOut.Contains("block status", StringComparison.Ordinal), where);
            // A content or size mismatch qemu-img finds has no end-of-file artefact before it: the same answer.
            Assert.True(qemuStrict.StdOut.Contains("block status", StringComparison.Ordinal) || oursStrict.StdOut == qemuStrict.StdOut, where);
            Assert.True(oursStrict.ExitCode is 0 or 1, where);
            if (Offset(oursStrict.StdOut) is { } ourOffset && Offset(qemuStrict.StdOut) is { } qemuOffset)
            {
                Assert.True(ourOffset >= qemuOffset, where);
            }
            if (oursStrict.StdOut.Contains("block status", StringComparison.Ordinal))
            {
                long expected = FirstKindDifference(a, b);
                Assert.True(expected == Offset(oursStrict.StdOut), $"{where}\nqemu-img map: first difference at {expected}");
            }
            compared++;
        }
        Assert.Equal(Pairs, compared);
        TestSeed.Report($"{Pairs} random pairs compared, {mismatches} of them different");
    }

    private static string[] RandomWrites(Random random, long clusters, int count)
    {
        long size = clusters * 65536;
        var commands = new string[count];
        for (int i = 0; i < count; i++)
        {
            long offset = random.NextInt64(size / 512) * 512;
            long length = Math.Min(size - offset, 512L * random.Next(1, 300));
            commands[i] = random.Next(5) switch
            {
                0 => $"write -z {offset} {length}",
                1 => $"write -P 0 {offset} {length}",
                _ => random.Next(3) == 0
                    ? $"write -P {random.Next(1, 4)} {random.NextInt64(size)} 1"
                    : $"write -P {random.Next(1, 4)} {offset} {length}",
            };
        }
        return commands;
    }

    private static long? Offset(string output) => OffsetInMessage().Match(output) is { Success: true } m ? long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : null;

    /// <summary>The first offset where qemu-img map shows the two images allocated differently (present, zero, data, mapped to a file offset), or -1.</summary>
    private long FirstKindDifference(string a, string b)
    {
        var one = Kinds(a);
        var other = Kinds(b);
        long end = Math.Min(one[^1].End, other[^1].End);
        foreach (long offset in one.Select(k => k.Start).Concat(other.Select(k => k.Start)).Where(o => o < end).Order())
        {
            if (KindAt(one, offset) != KindAt(other, offset))
            {
                return offset;
            }
        }
        return -1;
    }

    private static string KindAt(List<(long Start, long End, string Kind)> kinds, long offset) =>
        kinds.First(k => k.Start <= offset && offset < k.End).Kind;

    private List<(long Start, long End, string Kind)> Kinds(string image)
    {
        using var json = JsonDocument.Parse(Tools.QemuImg(_dir.Path, "map", "--output=json", image).StdOut);
        return [.. json.RootElement.EnumerateArray().Select(e =>
        {
            long start = e.GetProperty("start").GetInt64();
            string kind = $"{e.GetProperty("present")}/{e.GetProperty("zero")}/{e.GetProperty("data")}/{e.TryGetProperty("offset", out _)}";
            return (start, start + e.GetProperty("length").GetInt64(), kind);
        })];
    }

    [Fact]
    public void Ranges_that_read_as_zeros_on_both_sides_are_not_read()
    {
        // Two 1 TiB images with one cluster of data each, at the same place: only those two clusters are read.
        string a = Qed("big-a.qed", "1T", "write -P 1 512G 64k");
        string b = Qed("big-b.qed", "1T", "write -P 1 512G 64k", "write -z 100G 1G");
        var watch = Stopwatch.StartNew();
        using (var first = ImageOpener.Open(a, null, readOnly: true))
        using (var second = ImageOpener.Open(b, null, readOnly: true))
        {
            var comparer = new ImageComparer(first, a, first.Size, second, b, second.Size);
            Assert.Equal(new CompareResult(CompareOutcome.Identical, -1), comparer.Run(strict: false));
            Assert.Equal(2 * 65536, comparer.BytesRead);
        }
        var ours = QedCli.Run("compare", a, b);
        watch.Stop();
        Assert.Equal("Images are identical.\n", ours.StdOut);
        TestSeed.Report($"two 1 TiB images compared twice in {watch.ElapsedMilliseconds} ms, 128 KiB read");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"took {watch.Elapsed}");
    }

    [GeneratedRegex(@"(Could not open '[^']*': )\1")]
    private static partial Regex DoubledOpen();

    [GeneratedRegex(@" *\(\d+\.\d\d/100%\)\r\n?")]
    private static partial Regex ProgressLine();

    [GeneratedRegex(@"[Oo]ffset (\d+)")]
    private static partial Regex OffsetInMessage();
}
