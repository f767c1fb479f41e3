using System.Text.Json;
using Qed.Format;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed commit</c> against <c>qemu-img commit</c> run at test time: each chain is built once, copied, and each tool
/// commits its own copy. The bases must then read the same (<c>qemu-img compare</c> and a digest of the flattened
/// image), both our files must pass <c>qemu-img check</c>, our top must still read what it read before, and it must be
/// empty (every extent answered by the base or below) unless <c>-d</c> or <c>-b</c>, where its own allocation is unchanged
/// (qemu-img 7.2 never empties a QED overlay). Errors are compared line by line with qemu-img's.
/// </summary>
public sealed class CommitCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Qed_over_raw_with_data_zero_clusters_and_partial_clusters()
    {
        var outcome = CommitBoth(dir =>
        {
            CreateRaw(dir, "b.raw", "4M", "write -P 7 0 4M");
            CreateQed(dir, "o.qed", "4M", "b.raw", "raw", null, "write -P 0xab 0 64k", "write -z 128k 128k", "write -P 1 1536k 4k", "write -P 2 3M 100k");
        }, "o.qed", "b.raw", "raw", []);
        Assert.True(outcome.Emptied);
    }

    [Fact]
    public void Qed_over_qed_with_other_cluster_sizes_and_zero_clusters_over_base_data()
    {
        CommitBoth(dir =>
        {
            CreateQed(dir, "b.qed", "8M", null, null, "cluster_size=4096", "write -P 5 0 8M");
            CreateQed(dir, "o.qed", "8M", "b.qed", "qed", "cluster_size=16384", "write -P 0xcd 4k 40k", "write -z 1M 2M", "write -P 3 7M 1M");
        }, "o.qed", "b.qed", "qed", []);
    }

    [Fact]
    public void Depth_2_with_b_commits_the_middle_image_too_and_keeps_the_top()
    {
        var outcome = CommitBoth(dir =>
        {
            CreateRaw(dir, "b.raw", "4M", "write -P 1 0 2M");
            CreateQed(dir, "m.qed", "4M", "b.raw", "raw", null, "write -P 2 512k 1M", "write -z 3M 64k");
            CreateQed(dir, "t.qed", "4M", "m.qed", "qed", "cluster_size=4096", "write -P 3 1M 4k", "write -z 0 64k", "write -P 4 3584k 512k");
        }, "t.qed", "b.raw", "raw", ["-b", "b.raw"]);
        Assert.False(outcome.Emptied);
    }

    [Fact]
    public void Depth_1_with_b_and_d_keeps_the_top()
    {
        CommitBoth(dir =>
        {
            CreateQed(dir, "b.qed", "2M", null, null, null, "write -P 9 0 1M");
            CreateQed(dir, "o.qed", "2M", "b.qed", "qed", null, "write -P 8 64k 64k");
        }, "o.qed", "b.qed", "qed", ["-b", "b.qed", "-d"]);
    }

    [Fact]
    public void D_keeps_the_top()
    {
        var outcome = CommitBoth(dir =>
        {
            CreateRaw(dir, "b.raw", "1M", "write -P 6 0 1M");
            CreateQed(dir, "o.qed", "1M", "b.raw", "raw", null, "write -P 8 64k 64k", "write -z 512k 64k");
        }, "o.qed", "b.raw", "raw", ["-d"]);
        Assert.False(outcome.Emptied);
    }

    [Fact]
    public void A_shorter_base_grows_to_the_overlay_s_size()
    {
        // Raw and QED bases; the overlay holds data past the base's end and reads zeros between.
        CommitBoth(dir =>
        {
            CreateRaw(dir, "b.raw", "1M", "write -P 7 0 1M");
            CreateQed(dir, "o.qed", "3M", "b.raw", "raw", null, "write -P 1 2M 64k", "write -P 2 960k 128k");
        }, "o.qed", "b.raw", "raw", []);
        CommitBoth(dir =>
        {
            CreateQed(dir, "b.qed", "1M", null, null, null, "write -P 7 0 1M");
            CreateQed(dir, "o.qed", "5M", "b.qed", "qed", null, "write -P 1 4M 64k", "write -z 2M 64k");
        }, "o.qed", "b.qed", "qed", []);
    }

    [Fact]
    public void A_qed_base_that_cannot_grow_that_far_is_refused_and_nothing_changes()
    {
        // 4 KiB clusters and table_size 2 reach 4 GiB: qemu-img says only "Block job failed: Invalid argument".
        CreateQed(_dir.Path, "b.qed", "1G", null, null, "cluster_size=4096,table_size=2", "write -P 1 0 4k");
        CreateQed(_dir.Path, "o.qed", "8G", "b.qed", "qed", null, "write -P 2 7G 4k");
        string before = Fingerprints("b.qed", "o.qed");
        var qemu = Tools.QemuImgRaw(_dir.Path, "commit", _dir.File("o.qed"));
        Assert.Equal(1, qemu.ExitCode);
        Assert.Equal(before, Fingerprints("b.qed", "o.qed"));

        var ours = QedCli.Run("commit", _dir.File("o.qed"));
        Assert.Equal(1, ours.ExitCode);
        Assert.StartsWith($"qed: Cannot grow '{_dir.File("b.qed")}' from 1073741824 to the 8589934592 bytes of '{_dir.File("o.qed")}': ", ours.StdErr, StringComparison.Ordinal);
        Assert.Equal(before, Fingerprints("b.qed", "o.qed"));
    }

    [Fact]
    public void A_qed_base_over_a_longer_backing_file_grows_with_zeros_where_qemu_img_refuses()
    {
        // The top reads zeros past the base's end; grown, the base must not show its own backing file's data there.
        CreateRaw(_dir.Path, "bb.raw", "4M", "write -P 9 0 4M");
        CreateQed(_dir.Path, "b.qed", "1M", "bb.raw", "raw", null, "write -P 5 0 64k");
        CreateQed(_dir.Path, "o.qed", "4M", "b.qed", "qed", null, "write -P 1 2M 64k");
        string digest = Tools.QemuFlattenDigest(_dir.Path, _dir.File("o.qed"));
        string before = Fingerprints("bb.raw", "b.qed", "o.qed");
        var qemu = Tools.QemuImgRaw(_dir.Path, "commit", _dir.File("o.qed"));
        Assert.Equal((1, "qemu-img: Block job failed: Operation not supported\n"), (qemu.ExitCode, qemu.StdErr));
        Assert.Equal(before, Fingerprints("bb.raw", "b.qed", "o.qed"));

        Assert.Equal("Image committed.\n", QedCli.Ok("commit", _dir.File("o.qed")).StdOut);
        Assert.Equal(4L << 20, VirtualSize(_dir.Path, _dir.File("b.qed"), "qed"));
        Assert.Equal(digest, Tools.QemuFlattenDigest(_dir.Path, _dir.File("b.qed")));
        Assert.Equal(digest, Tools.QemuFlattenDigest(_dir.Path, _dir.File("o.qed")));
        Assert.Empty(OwnExtents(_dir.Path, _dir.File("o.qed")));
        AssertCheckClean(_dir.File("b.qed"));
        AssertCheckClean(_dir.File("o.qed"));
    }

    [Fact]
    public void A_base_or_top_in_use_is_refused_with_qemu_s_lock_message()
    {
        CreateQed(_dir.Path, "b.qed", "1M", null, null, null, "write -P 1 0 64k");
        CreateQed(_dir.Path, "o.qed", "1M", "b.qed", "qed", null, "write -P 2 0 4k");
        string before = Fingerprints("b.qed", "o.qed");
        // Our own read-only open holds QED's read locks, which refuse writers (OFD locks conflict within a process too).
        using (var reader = QedImage.Open(_dir.File("b.qed"), new ImageOpenOptions { ReadOnly = true }))
        {
            var qemu = Tools.QemuImgRaw(_dir.Path, "commit", _dir.File("o.qed"));
            var ours = QedCli.Run("commit", _dir.File("o.qed"));
            Assert.Equal(1, qemu.ExitCode);
            Assert.Equal((1, ""), (ours.ExitCode, ours.StdOut));
            Assert.True(QedCli.Lines(qemu.StdErr).Select(QedCli.AsQed).SequenceEqual(QedCli.Lines(ours.StdErr)), $"qemu-img:\n{qemu.StdErr}\nqed:\n{ours.StdErr}");
        }
        Assert.Equal(before, Fingerprints("b.qed", "o.qed"));

        // The top in use: refused at its open, before any progress line.
        using (var reader = QedImage.Open(_dir.File("o.qed"), new ImageOpenOptions { ReadOnly = true }))
        {
            var qemu = Tools.QemuImgRaw(_dir.Path, "commit", "-p", _dir.File("o.qed"));
            var ours = QedCli.Run("commit", "-p", _dir.File("o.qed"));
            Assert.Equal((1, ""), (qemu.ExitCode, qemu.StdOut));
            Assert.Equal((1, ""), (ours.ExitCode, ours.StdOut));
            Assert.True(QedCli.Lines(qemu.StdErr).Select(QedCli.AsQed).SequenceEqual(QedCli.Lines(ours.StdErr)), $"qemu-img:\n{qemu.StdErr}\nqed:\n{ours.StdErr}");
        }
        Assert.Equal(before, Fingerprints("b.qed", "o.qed"));
    }

    [Fact]
    public void A_base_with_the_need_check_bit_is_repaired_on_open_and_left_clean()
    {
        CreateQed(_dir.Path, "b.qed", "1M", null, null, null, "write -P 1 0 64k");
        CreateQed(_dir.Path, "o.qed", "1M", "b.qed", "qed", null, "write -P 2 512k 64k");
        Tools.PokeU64(_dir.File("b.qed"), HeaderLayout.FeaturesOffset, (ulong)QedFeatures.NeedCheck);
        string digest = Tools.QemuFlattenDigest(_dir.Path, _dir.File("o.qed"));

        Assert.Equal("Image committed.\n", QedCli.Ok("commit", _dir.File("o.qed")).StdOut);
        Assert.Equal(digest, Tools.QemuFlattenDigest(_dir.Path, _dir.File("b.qed")));
        using (var file = File.OpenRead(_dir.File("b.qed")))
        {
            byte[] header = new byte[HeaderLayout.Size];
            file.ReadExactly(header);
            Assert.False(QedHeader.Parse(header).NeedsCheck);
        }
        AssertCheckClean(_dir.File("b.qed"));
        AssertCheckClean(_dir.File("o.qed"));
    }

    [Fact]
    public void Progress_is_qemu_img_s_and_quiet_silences_it()
    {
        CreateRaw(_dir.Path, "b.raw", "2M", "write -P 1 0 2M");
        CreateQed(_dir.Path, "o.qed", "2M", "b.raw", "raw", null, "write -P 2 0 1M");
        var ours = QedCli.Ok("commit", "-p", _dir.File("o.qed"));
        Assert.StartsWith("    (0.00/100%)\r", ours.StdOut, StringComparison.Ordinal);
        Assert.EndsWith("    (100.00/100%)\r\nImage committed.\n", ours.StdOut, StringComparison.Ordinal);
        var qemu = Tools.QemuImg(_dir.Path, "commit", "-p", _dir.File("o.qed"));
        Assert.StartsWith("    (0.00/100%)\r", qemu.StdOut, StringComparison.Ordinal);
        Assert.EndsWith("    (100.00/100%)\r\nImage committed.\n", qemu.StdOut, StringComparison.Ordinal);

        Assert.Equal("", Tools.QemuImg(_dir.Path, "commit", "-p", "-q", _dir.File("o.qed")).StdOut);
        Assert.Equal("", QedCli.Ok("commit", "-p", "-q", _dir.File("o.qed")).StdOut);

        // A failure after the open ends the progress line first, as qemu-img does.
        CreateQed(_dir.Path, "s.qed", "1M", null, null, null);
        var qemuFailed = Tools.QemuImgRaw(_dir.Path, "commit", "-p", _dir.File("s.qed"));
        var oursFailed = QedCli.Run("commit", "-p", _dir.File("s.qed"));
        Assert.Equal((1, "    (0.00/100%)\r\n"), (qemuFailed.ExitCode, qemuFailed.StdOut));
        Assert.Equal((qemuFailed.ExitCode, qemuFailed.StdOut), (oursFailed.ExitCode, oursFailed.StdOut));
    }

    [Fact]
    public void Rate_limit_paces_the_copy()
    {
        CreateRaw(_dir.Path, "b.raw", "1M");
        CreateQed(_dir.Path, "o.qed", "1M", "b.raw", "raw", null, "write -P 1 0 512k");
        string digest = Tools.QemuFlattenDigest(_dir.Path, _dir.File("o.qed"));
        // 512 KiB at 512 KiB/s: the single chunk is followed by a pause of about one second.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal("Image committed.\n", QedCli.Ok("commit", "-r", "512k", _dir.File("o.qed")).StdOut);
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(0.9), $"took {clock.Elapsed}");
        Assert.Equal(digest, Tools.QemuFlattenDigest(_dir.Path, _dir.File("b.raw"), "raw"));
        // 0 is no limit, as in qemu-img.
        Assert.Equal("Image committed.\n", QedCli.Ok("commit", "-r", "0", _dir.File("o.qed")).StdOut);
    }

    [Theory]
    [InlineData("@/s.qed")]
    [InlineData("-b", "@/nothere.qed", "@/o.qed")]
    [InlineData("-b", "o.qed", "@/o.qed")]
    [InlineData("-b", "b.raw", "-f", "raw", "@/b.raw")]
    [InlineData("@/missing.qed")]
    [InlineData("-t", "bogus", "@/o.qed")]
    [InlineData("-r", "fast", "@/o.qed")]
    [InlineData("-U", "@/o.qed")]
    [InlineData("@/o.qed", "@/s.qed")]
    [InlineData()]
    public void Refusals_are_qemu_img_s_and_change_nothing(params string[] template)
    {
        CreateRaw(_dir.Path, "b.raw", "1M", "write -P 1 0 64k");
        CreateQed(_dir.Path, "o.qed", "1M", "b.raw", "raw", null, "write -P 2 0 4k");
        CreateQed(_dir.Path, "s.qed", "1M", null, null, null, "write -P 3 0 4k");
        string before = Fingerprints("b.raw", "o.qed", "s.qed");
        string[] args = ["commit", .. template.Select(a => a.Replace("@", _dir.Path, StringComparison.Ordinal))];

        var qemu = Tools.QemuImgRaw(_dir.Path, args);
        Assert.Equal(before, Fingerprints("b.raw", "o.qed", "s.qed"));
        var ours = QedCli.Run(args);
        Assert.Equal(before, Fingerprints("b.raw", "o.qed", "s.qed"));

        Assert.Equal(1, qemu.ExitCode);
        Assert.Equal((1, ""), (ours.ExitCode, ours.StdOut));
        // qemu-img wraps cvtnum's message over two lines, where qed prints one, and names a missing file twice.
        string qemuText = string.Join(" ", QedCli.Lines(qemu.StdErr).Select(QedCli.AsQed)).Replace(" qed: ", " ", StringComparison.Ordinal);
        qemuText = System.Text.RegularExpressions.Regex.Replace(qemuText, "(Could not open '[^']*': )\\1", "$1");
        string oursText = string.Join(" ", QedCli.Lines(ours.StdErr));
        Assert.Equal(qemuText, oursText);
    }

    [Fact]
    public void Random_chains_commit_as_qemu_img_does()
    {
        int seed = TestSeed.For(nameof(Random_chains_commit_as_qemu_img_does));
        var random = new Random(seed);
        const int Cases = 6;
        int ran = 0;
        for (int i = 0; i < Cases; i++)
        {
            int depth = random.Next(1, 3);
            bool rawBase = random.Next(2) == 0;
            bool useB = depth == 2 || random.Next(3) == 0;
            bool keep = random.Next(3) == 0;
            long baseSize = random.Next(1, 9) << 19;
            long size = Math.Max(baseSize, (long)random.Next(1, 9) << 19);
            string[] cluster = ["cluster_size=4096", "cluster_size=16384", "cluster_size=65536"];
            var scripts = Enumerable.Range(0, depth + 1).Select(_ => RandomWrites(random, size)).ToArray();
            string baseName = rawBase ? "b.raw" : "b.qed";
            string top = depth == 1 ? "o.qed" : "t.qed";
            string[] options = [.. useB ? new[] { "-b", baseName } : [], .. keep ? new[] { "-d" } : []];
            TestSeed.Report($"case {i}: depth {depth}, {(rawBase ? "raw" : "qed")} base of {baseSize} under {size} bytes, options '{string.Join(' ', options)}'");
            var sub = Path.Combine(_dir.Path, $"case{i}");
            Directory.CreateDirectory(sub);
            CommitBoth(dir =>
            {
                var baseWrites = RandomWrites(random, baseSize).Where(w => !w.Contains("-z", StringComparison.Ordinal)).ToArray();
                if (rawBase)
                {
                    CreateRaw(dir, baseName, baseSize.ToString(System.Globalization.CultureInfo.InvariantCulture), baseWrites);
                }
                else
                {
                    CreateQed(dir, baseName, baseSize.ToString(System.Globalization.CultureInfo.InvariantCulture), null, null, cluster[random.Next(3)], baseWrites);
                }
                if (depth == 2)
                {
                    CreateQed(dir, "m.qed", size.ToString(System.Globalization.CultureInfo.InvariantCulture), baseName, rawBase ? "raw" : "qed", cluster[random.Next(3)], scripts[1]);
                }
                CreateQed(dir, top, size.ToString(System.Globalization.CultureInfo.InvariantCulture), depth == 2 ? "m.qed" : baseName, depth == 2 ? "qed" : rawBase ? "raw" : "qed", cluster[random.Next(3)], scripts[0]);
            }, top, baseName, rawBase ? "raw" : "qed", options, sub);
            ran++;
        }
        Assert.Equal(Cases, ran);
    }

    private static string[] RandomWrites(Random random, long size)
    {
        int count = random.Next(1, 8);
        var writes = new string[count];
        for (int i = 0; i < count; i++)
        {
            long offset = random.NextInt64(size / 512) * 512;
            long length = Math.Min(size - offset, random.Next(1, 256) * 512L);
            writes[i] = random.Next(4) == 0 ? $"write -z {offset} {length}" : $"write -P {random.Next(1, 256)} {offset} {length}";
        }
        return writes;
    }

    /// <summary>What one side-by-side commit found.</summary>
    private sealed record Outcome(bool Emptied);

    /// <summary>
    /// Builds the chain in <c>ours/</c>, copies it to <c>qemu/</c>, commits each with its tool and compares (see the class
    /// summary). The top is emptied unless the options keep it.
    /// </summary>
    private Outcome CommitBoth(Action<string> build, string top, string baseName, string baseFormat, string[] options, string? root = null) =>
        CommitBothIn(build, top, baseName, baseFormat, options, root ?? Path.Combine(_dir.Path, Guid.NewGuid().ToString("N")[..8]));

    private static Outcome CommitBothIn(Action<string> build, string top, string baseName, string baseFormat, string[] options, string root)
    {
        string ours = Path.Combine(root, "ours"), qemu = Path.Combine(root, "qemu");
        Directory.CreateDirectory(ours);
        build(ours);
        Directory.CreateDirectory(qemu);
        foreach (string file in Directory.GetFiles(ours))
        {
            File.Copy(file, Path.Combine(qemu, Path.GetFileName(file)));
        }
        string oursTop = Path.Combine(ours, top), qemuTop = Path.Combine(qemu, top);
        string oursBase = Path.Combine(ours, baseName), qemuBase = Path.Combine(qemu, baseName);
        string topDigest = Tools.QemuFlattenDigest(ours, oursTop);
        var topOwnBefore = OwnExtents(ours, oursTop);

        var qemuRun = Tools.QemuImg(qemu, ["commit", .. options, qemuTop]);
        var oursRun = QedCli.Ok(["commit", .. options, oursTop]);
        Assert.Equal(qemuRun.StdOut, oursRun.StdOut);
        Assert.Equal("Image committed.\n", oursRun.StdOut);
        Assert.Equal("", oursRun.StdErr);

        // The bases read the same, at the same size.
        Assert.Equal(VirtualSize(qemu, qemuBase, baseFormat), VirtualSize(ours, oursBase, baseFormat));
        Assert.Equal("Images are identical.\n", Tools.QemuImg(ours, "compare", "-f", baseFormat, "-F", baseFormat, qemuBase, oursBase).StdOut);
        Assert.Equal(Tools.QemuFlattenDigest(qemu, qemuBase, baseFormat), Tools.QemuFlattenDigest(ours, oursBase, baseFormat));
        // Over the top's size the base reads what the top read.
        long topSize = VirtualSize(ours, oursTop, "qed");
        Assert.Equal(topDigest, PrefixDigest(ours, oursBase, baseFormat, topSize));

        // Our files are consistent, and the top still reads the same.
        foreach (string file in Directory.GetFiles(ours, "*.qed"))
        {
            AssertCheckClean(file);
        }
        Assert.Equal(topDigest, Tools.QemuFlattenDigest(ours, oursTop));

        bool emptied = !options.Contains("-d") && !options.Contains("-b");
        var topOwnAfter = OwnExtents(ours, oursTop);
        if (emptied)
        {
            Assert.Empty(topOwnAfter);
        }
        else
        {
            Assert.Equal(topOwnBefore, topOwnAfter);
            // qemu-img leaves its top as it was too.
            Assert.Equal(topOwnBefore, OwnExtents(qemu, qemuTop));
        }
        return new Outcome(emptied);
    }

    /// <summary>The extents the image itself holds (depth 0 and present in qemu-img map; not what reads as zeros past a shorter backing file): start, length, zero, data.</summary>
    private static List<(long, long, bool, bool)> OwnExtents(string dir, string image)
    {
        using var map = JsonDocument.Parse(Tools.QemuImg(dir, "map", "--output=json", "-f", "qed", image).StdOut);
        return map.RootElement.EnumerateArray()
            .Where(e => e.GetProperty("depth").GetInt32() == 0 && e.GetProperty("present").GetBoolean())
            .Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("zero").GetBoolean(), e.GetProperty("data").GetBoolean()))
            .ToList();
    }

    private static long VirtualSize(string dir, string image, string format)
    {
        using var info = JsonDocument.Parse(Tools.QemuImg(dir, "info", "--output=json", "-f", format, image).StdOut);
        return info.RootElement.GetProperty("virtual-size").GetInt64();
    }

    /// <summary>sha256 of the first <paramref name="length"/> bytes of the flattened image.</summary>
    private static string PrefixDigest(string dir, string image, string format, long length)
    {
        string raw = Path.Combine(dir, "prefix-" + Guid.NewGuid().ToString("N")[..8] + ".raw");
        try
        {
            Tools.QemuImg(dir, "convert", "-f", format, "-O", "raw", image, raw);
            using (var handle = File.OpenHandle(raw, FileMode.Open, FileAccess.ReadWrite))
            {
                RandomAccess.SetLength(handle, length);
            }
            return Tools.Sha256OfFile(raw);
        }
        finally
        {
            File.Delete(raw);
        }
    }

    private static void AssertCheckClean(string file)
    {
        var check = Tools.QemuImgRaw(Path.GetDirectoryName(file)!, "check", "-f", "qed", file);
        Assert.True(check.ExitCode == 0 && check.StdOut.StartsWith("No errors were found on the image.\n", StringComparison.Ordinal), $"qemu-img check {file}: {check}");
    }

    private static void CreateRaw(string dir, string name, string size, params string[] writes)
    {
        string path = Path.Combine(dir, name);
        Tools.QemuImg(dir, "create", "-q", "-f", "raw", path, size);
        if (writes.Length > 0)
        {
            Tools.QemuIo(dir, "raw", path, writes);
        }
    }

    private static void CreateQed(string dir, string name, string size, string? backing, string? backingFormat, string? options, params string[] writes)
    {
        string path = Path.Combine(dir, name);
        string[] args = ["create", "-q", "-f", "qed", .. options is null ? [] : new[] { "-o", options },
            .. backing is null ? [] : new[] { "-b", backing, "-F", backingFormat! }, path, size];
        Tools.QemuImg(dir, args);
        if (writes.Length > 0)
        {
            Tools.QemuIo(dir, "qed", path, writes);
        }
    }

    private string Fingerprints(params string[] names) => string.Join(" ", names.Select(n => QedCli.Fingerprint(_dir.File(n))));
}
