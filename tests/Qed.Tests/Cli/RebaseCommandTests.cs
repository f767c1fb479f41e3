using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed rebase</c> against <c>qemu-img rebase</c> run at test time on copies of the same inputs: the resulting overlay
/// byte for byte (so allocation and layout too, also checked through <c>qemu-img map</c>), the disk it shows (unchanged
/// by a safe rebase), and every refusal line; where qemu-img writes before refusing or writes a loop, both sides.
/// </summary>
public sealed class RebaseCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private int _copies;

    public void Dispose() => _dir.Dispose();

    private string Src => Directory.CreateDirectory(_dir.File("src")).FullName;

    private string InSrc(string name) => Path.Combine(Src, name);

    private void Qimg(params string[] args) => Tools.QemuImg(Src, args);

    private void Qio(string format, string image, params string[] commands) => Tools.QemuIo(Src, format, InSrc(image), commands);

    /// <summary>A fresh copy of the source directory (backing files included, so relative names resolve alike).</summary>
    private string CopyOfSource()
    {
        string copy = _dir.File($"copy{++_copies}");
        Directory.CreateDirectory(copy);
        foreach (string file in Directory.GetFiles(Src))
        {
            File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        }
        return copy;
    }

    /// <summary>Runs <c>qemu-img rebase ARGS</c> and <c>qed rebase ARGS</c> on two copies of <paramref name="image"/>'s directory.</summary>
    private (ToolResult Qemu, ToolResult Ours, string QemuImage, string OurImage) Both(string image, params string[] args)
    {
        string q = Path.Combine(CopyOfSource(), image);
        string o = Path.Combine(CopyOfSource(), image);
        var qemu = Tools.QemuImgRaw(Src, ["rebase", .. args, q]);
        var ours = QedCli.Run(["rebase", .. args, o]);
        return (qemu, ours, q, o);
    }

    /// <summary>Both succeed, write the same bytes, and (safe mode) the disk reads as before.</summary>
    private void AssertSameResult(string image, params string[] args)
    {
        string before = Tools.QemuFlattenDigest(Src, InSrc(image));
        var (qemu, ours, q, o) = Both(image, args);
        string what = $"rebase {string.Join(' ', args)} {image}";
        Assert.True(qemu.ExitCode == 0, $"qemu-img {what}: {qemu}");
        Assert.True(ours.ExitCode == 0, $"qed {what}: {ours}");
        Assert.Equal("", ours.StdErr);
        Assert.True(Tools.Sha256OfFile(q) == Tools.Sha256OfFile(o), $"{what}: the files differ");
        if (!args.Contains("-u"))
        {
            // Allocation as qemu-img map shows it (implied by equal bytes; this says where they differ when they do not).
            Assert.True(Map(q) == Map(o), $"{what}: allocation differs\nqemu-img:\n{Map(q)}\nqed:\n{Map(o)}");
            Assert.Equal(before, Tools.QemuFlattenDigest(Src, o));
            Assert.Equal(0, Tools.QemuImgRaw(Src, "check", o).ExitCode);
        }
    }

    private string Map(string image) => Tools.QemuImg(Src, "map", "--output=json", image).StdOut;

    /// <summary>Both refuse with the same first line (ours may explain more after it) and exit 1; ours leaves the file as it was.</summary>
    private (ToolResult Qemu, string QemuImage) AssertSameRefusal(string image, bool prefixOnly, params string[] args)
    {
        var (qemu, ours, q, o) = Both(image, args);
        string what = $"rebase {string.Join(' ', args)} {image}";
        Assert.True(qemu.ExitCode == 1, $"qemu-img {what}: {qemu}");
        Assert.True(ours.ExitCode == 1, $"qed {what}: {ours}");
        string expected = QedCli.AsQed(qemu.StdErr).Replace(Path.GetDirectoryName(q)!, Path.GetDirectoryName(o)!, StringComparison.Ordinal);
        if (prefixOnly)
        {
            Assert.StartsWith(expected.TrimEnd('\n'), ours.StdErr, StringComparison.Ordinal);
            Assert.Single(QedCli.Lines(ours.StdErr));
        }
        else
        {
            Assert.Equal(expected, ours.StdErr);
        }
        Assert.Equal(Tools.Sha256OfFile(InSrc(image)), Tools.Sha256OfFile(o));
        return (qemu, q);
    }

    private void RawFile(string name, string size, params string[] writes)
    {
        Qimg("create", "-q", "-f", "raw", InSrc(name), size);
        if (writes.Length > 0)
        {
            Qio("raw", name, writes);
        }
    }

    private void Overlay(string name, string backing, string backingFormat, string? size = null, params string[] writes)
    {
        Qimg(["create", "-q", "-f", "qed", "-b", backing, "-F", backingFormat, InSrc(name), .. size is null ? Array.Empty<string>() : [size]]);
        if (writes.Length > 0)
        {
            Qio("qed", name, writes);
        }
    }

    [Fact]
    public void Safe_rebase_from_raw_to_raw_equals_qemu_img()
    {
        RawFile("base.raw", "4M", "write -P 0xb0 0 4M");
        // The new base agrees on [0, 1M), differs on [1M, 2M) in places, and is zeros after 3M.
        RawFile("new.raw", "4M", "write -P 0xb0 0 3M", "write -P 0x77 1M 1k", "write -P 0x78 1100k 130k");
        Overlay("ov.qed", "base.raw", "raw", null, "write -P 0x11 64k 4k", "write -P 0x12 1050k 64k", "write -z 3M 128k");
        AssertSameResult("ov.qed", "-f", "qed", "-b", "new.raw", "-F", "raw");
        AssertSameResult("ov.qed", "-b", "new.raw", "-F", "raw");
    }

    [Fact]
    public void Safe_rebase_in_and_out_of_a_qed_chain_equals_qemu_img()
    {
        var dir = Src;
        string top = Fixtures.F08(ImageWriter.Qemu, dir);
        // Onto the bottom of its own chain (the middle layer's data must move up), onto the middle, and onto a foreign QED.
        AssertSameResult(top, "-b", "f08-base.qed", "-F", "qed");
        AssertSameResult(top, "-b", "f08-mid.qed", "-F", "qed");
        Qimg("create", "-q", "-f", "qed", "-o", "cluster_size=4096", InSrc("other.qed"), "3M");
        Qio("qed", "other.qed", "write -P 0xa0 0 512k", "write -P 0x5a 1M 100k");
        AssertSameResult(top, "-b", "other.qed", "-F", "qed");
    }

    [Fact]
    public void Removing_the_backing_file_in_safe_mode_flattens_it_into_the_overlay_as_qemu_img_does()
    {
        RawFile("base.raw", "4M", "write -P 0xb0 0 1M", "write -P 0xb1 2M 64k", "write -P 0xb2 3M 1k");
        Overlay("ov.qed", "base.raw", "raw", "6M", "write -P 0x11 64k 4k", "write -z 2M 64k");
        AssertSameResult("ov.qed", "-b", "", "-F", "raw");
        AssertSameResult("ov.qed", "-b", "");
        // An image without a backing file: only the header's backing offset becomes 64.
        Qimg("create", "-q", "-f", "qed", InSrc("plain.qed"), "1M");
        AssertSameResult("plain.qed", "-b", "");
        AssertSameResult("plain.qed", "-u", "-b", "");
    }

    [Fact]
    public void Unsafe_rebase_writes_qemu_img_s_header_bytes()
    {
        RawFile("base.raw", "4M", "write -P 0xb0 0 4M");
        RawFile("n.raw", "1M");
        Overlay("ov.qed", "base.raw", "raw", null, "write -P 0x11 64k 4k");
        Qimg("create", "-q", "-f", "qed", InSrc("q.qed"), "1M");
        int cases = 0;
        foreach (string[] args in new[]
        {
            new[] { "-u", "-b", "n.raw", "-F", "raw" },                   // shorter name: the old one's tail stays
            ["-u", "-b", "a-much-longer-backing-file-name.raw", "-F", "raw"],
            ["-u", "-b", "q.qed", "-F", "qed"],                           // not raw: no no-probe bit
            ["-u", "-b", "missing.raw", "-F", "raw"],                     // -u does not need the file
            ["-u", "-b", "", "-F", "raw"],
            ["-u", "-b", ""],
            ["-u"],                                                       // qemu-img -u without -b removes the backing file
            ["-u", "-b", "sub/dir/x.qcow2", "-F", "qcow2"],
            ["-u", "-b", Path.Combine(Src, "base.raw"), "-F", "raw"],     // absolute
        })
        {
            AssertSameResult("ov.qed", args);
            cases++;
        }
        Assert.Equal(9, cases);
    }

    [Fact]
    public void Unsafe_rebase_of_the_F25_and_F32_fixtures_equals_qemu_img()
    {
        string f25 = Fixtures.F25(ImageWriter.Qemu, Src);
        // The name moves from 0x10064 to 0x40, as qemu-img moves it.
        AssertSameResult(f25, "-u", "-b", "f07-base.raw", "-F", "raw");
        AssertSameResult(f25, "-u", "-b", "");
        AssertSameResult(f25, "-b", "");
        string f32 = Fixtures.F32(ImageWriter.Qemu, Src);
        AssertSameResult(f32, "-u", "-b", "f07-base.raw", "-F", "raw");
        AssertSameResult(f32, "-b", "f07-base.raw", "-F", "raw");
    }

    [Fact]
    public void Zero_clusters_stay_zero_and_shorter_or_longer_new_backing_files_read_as_zeros_past_their_end()
    {
        string f09 = Fixtures.F09(ImageWriter.Qemu, Src);  // zero clusters over f07-base.raw (4 MiB of 0xb0)
        RawFile("other.raw", "8M", "write -P 0x5c 0 8M");
        AssertSameResult(f09, "-b", "other.raw", "-F", "raw");
        // Shorter (unaligned, F12's 1000000 bytes) and longer than the overlay.
        string f12 = Fixtures.F12(ImageWriter.Qemu, Src);  // 4 MiB over 1000000 bytes of 0xe0
        RawFile("long.raw", "6M", "write -P 0xe0 0 2M", "write -P 0x61 5M 1M");
        AssertSameResult(f12, "-b", "long.raw", "-F", "raw");
        File.Copy(InSrc("f12-short.raw"), InSrc("short2.raw"));
        Fixtures.Truncate(Src, "short2.raw", 700_001);
        AssertSameResult(f12, "-b", "short2.raw", "-F", "raw");
        AssertSameResult("f12.qed", "-b", "long.raw", "-F", "raw");
        // An overlay without a backing file moved onto one: zeros where the new one has data (zero clusters).
        Qimg("create", "-q", "-f", "qed", InSrc("lone.qed"), "8M");
        Qio("qed", "lone.qed", "write -P 0x4c 1M 64k");
        AssertSameResult("lone.qed", "-b", "long.raw", "-F", "raw");
    }

    [Fact]
    public void Progress_is_printed_as_qemu_img_prints_it()
    {
        RawFile("base.raw", "8M", "write -P 0xb0 0 8M");
        RawFile("new.raw", "8M");
        Overlay("ov.qed", "base.raw", "raw");
        var (qemu, result, _, _) = Both("ov.qed", "-p", "-b", "new.raw", "-F", "raw");
        Assert.Equal(qemu.StdOut, result.StdOut);
        Assert.StartsWith("    (0.00/100%)\r", result.StdOut, StringComparison.Ordinal);
        Assert.EndsWith("    (100.00/100%)\r\n", result.StdOut, StringComparison.Ordinal);
        Assert.Contains("    (50.00/100%)\r", result.StdOut, StringComparison.Ordinal);
        Assert.Equal("", QedCli.Ok("rebase", "-p", "-q", "-u", "-b", "", InSrc("ov.qed")).StdOut);
    }

    [Fact]
    public void Refusals_read_as_qemu_img_s()
    {
        RawFile("base.raw", "4M", "write -P 0xb0 0 4M");
        RawFile("new.raw", "4M", "write -P 0x11 0 1M");
        Overlay("ov.qed", "base.raw", "raw", null, "write -P 0x22 2M 64k");
        int cases = 0;
        foreach (string[] args in new[]
        {
            new[] { "-u", "-b", "new.raw" },                          // -F required
            ["-b", "new.raw", "-F", "bogus"],
            ["-u", "-b", "new.raw", "-F", "bogus"],
            ["-b", "missing.raw", "-F", "raw"],
            ["-t", "bogus", "-u", "-b", "new.raw", "-F", "raw"],
            ["-T", "bogus", "-u", "-b", "new.raw", "-F", "raw"],
        })
        {
            AssertSameRefusal("ov.qed", prefixOnly: false, args);
            cases++;
        }
        // Usage errors, with the pointer to the help.
        AssertSameRefusal("ov.qed", prefixOnly: false, "-b", "new.raw", "-F", "raw", "extra");
        AssertSameRefusal("ov.qed", prefixOnly: false, "-F", "raw");
        // A missing image.
        var qemu = Tools.QemuImgRaw(Src, "rebase", "-u", "-b", "x", "-F", "raw", InSrc("none.qed"));
        var ours = QedCli.Run("rebase", "-u", "-b", "x", "-F", "raw", InSrc("none.qed"));
        // qemu-img says "Could not open 'F': " twice (the command's prefix and the file layer's); qed says it once, as its other commands do.
        string twice = $"Could not open '{InSrc("none.qed")}': ";
        Assert.Equal((1, QedCli.AsQed(qemu.StdErr).Replace(twice + twice, twice, StringComparison.Ordinal)), (ours.ExitCode, ours.StdErr));
        // A new backing file that is not in the format -F names: qemu-img's reason, then what the header holds instead.
        AssertSameRefusal("ov.qed", prefixOnly: true, "-b", "new.raw", "-F", "qed");
        // A raw image has no backing file: qemu-img's errno text, then why.
        AssertSameRefusal("new.raw", prefixOnly: true, "-f", "raw", "-u", "-b", "x", "-F", "raw");
        Assert.Equal(6, cases);
    }

    [Fact]
    public void Name_too_long_for_the_header_area_is_refused_as_qemu_img_refuses_it()
    {
        Qimg("create", "-q", "-f", "qed", "-o", "cluster_size=4096", InSrc("s.qed"), "1M");
        // 64 + 4032 bytes fill the 4 KiB header cluster exactly; one more does not fit.
        AssertSameResult("s.qed", "-u", "-b", new string('a', 4032), "-F", "raw");
        AssertSameRefusal("s.qed", prefixOnly: false, "-u", "-b", new string('a', 4033), "-F", "raw");
    }

    [Fact]
    public void Missing_backing_format_in_safe_mode_changes_nothing_where_qemu_img_has_already_copied_data()
    {
        RawFile("base.raw", "4M", "write -P 0xb0 0 4M");
        RawFile("new.raw", "4M", "write -P 0xb0 0 2M");
        Overlay("ov.qed", "base.raw", "raw", null, "write -P 0x11 64k 4k");
        var (qemu, q) = AssertSameRefusal("ov.qed", prefixOnly: false, "-b", "new.raw");
        Assert.Contains("backing format must be specified", qemu.StdErr, StringComparison.Ordinal);
        // qemu-img copied [2M, 4M) into the overlay before it refused; ours is byte-identical to the input.
        Assert.NotEqual(Tools.Sha256OfFile(InSrc("ov.qed")), Tools.Sha256OfFile(q));
        Assert.Contains("\"start\": 2097152, \"length\": 2097152, \"depth\": 0", Map(q), StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_compatible_features_are_refused_before_any_write_where_qemu_img_writes_first()
    {
        // F27's compat bit, over a backing file (so that a safe rebase has something to copy).
        RawFile("base.raw", "4M");
        RawFile("new.raw", "4M", "write -P 0xb0 0 2M");
        Overlay("ov.qed", "base.raw", "raw");
        Tools.Poke(InSrc("ov.qed"), 24, 0x01);
        AssertSameRefusal("ov.qed", prefixOnly: true, "-u", "-b", "new.raw", "-F", "raw");
        var (_, q) = AssertSameRefusal("ov.qed", prefixOnly: true, "-b", "new.raw", "-F", "raw");
        // qemu-img had written [0, 2M) into the overlay before it found out.
        Assert.Contains("\"start\": 0, \"length\": 2097152, \"depth\": 0,", Map(q), StringComparison.Ordinal);
        // Removing the backing file needs no room for a name: both accept it.
        AssertSameResult("ov.qed", "-u", "-b", "");
    }

    [Fact]
    public void A_backing_file_that_leads_back_to_the_image_is_refused_where_qemu_img_u_writes_the_loop()
    {
        RawFile("base.raw", "4M");
        Overlay("ov.qed", "base.raw", "raw");
        Overlay("upper.qed", "ov.qed", "qed");
        string ov = InSrc("ov.qed");
        foreach (string target in new[] { "ov.qed", "upper.qed" })
        {
            string q = Path.Combine(CopyOfSource(), "ov.qed");
            string o = Path.Combine(CopyOfSource(), "ov.qed");
            Assert.Equal(0, Tools.QemuImgRaw(Src, "rebase", "-u", "-b", target, "-F", "qed", q).ExitCode);
            var info = Tools.QemuImgRaw(Src, "info", "--backing-chain", q);
            Assert.Contains("creates an infinite loop", info.StdErr, StringComparison.Ordinal);
            Assert.NotEqual(0, Tools.Run("qemu-io", ["-f", "qed", "-c", "read 0 1k", q]).ExitCode);

            var ours = QedCli.Run("rebase", "-u", "-b", target, "-F", "qed", o);
            string resolved = Path.Combine(Path.GetDirectoryName(o)!, "ov.qed");
            Assert.Equal((1, $"qed: Could not change the backing file to '{target}': Backing file '{resolved}' creates an infinite loop.\n"), (ours.ExitCode, ours.StdErr));
            Assert.Equal(Tools.Sha256OfFile(ov), Tools.Sha256OfFile(o));
            // Safe mode: qemu-img trips over its own lock; ours names the loop.
            var safe = QedCli.Run("rebase", "-b", target, "-F", "qed", o);
            Assert.Equal(ours.StdErr, safe.StdErr);
        }
    }

    [Fact]
    public void A_name_qemu_could_not_read_back_is_refused_where_qemu_img_u_writes_it()
    {
        RawFile("base.raw", "4M");
        Overlay("ov.qed", "base.raw", "raw");
        string name = new('n', 4096);
        string q = Path.Combine(CopyOfSource(), "ov.qed");
        Assert.Equal(0, Tools.QemuImgRaw(Src, "rebase", "-u", "-b", name, "-F", "raw", q).ExitCode);
        Assert.Contains("Failed to read backing filename", Tools.QemuImgRaw(Src, "info", q).StdErr, StringComparison.Ordinal);
        string o = Path.Combine(CopyOfSource(), "ov.qed");
        var ours = QedCli.Run("rebase", "-u", "-b", name, "-F", "raw", o);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal($"qed: Could not change the backing file to '{name}': The backing file name is 4096 bytes long; QEMU reads at most 4095\n", ours.StdErr);
        Assert.Equal(Tools.Sha256OfFile(InSrc("ov.qed")), Tools.Sha256OfFile(o));
    }

    [Fact]
    public void Random_chains_rebase_as_qemu_img_rebases_them()
    {
        int seed = TestSeed.For(nameof(Random_chains_rebase_as_qemu_img_rebases_them));
        var random = new Random(seed);
        const int Rounds = 6;
        int ran = 0;
        for (int round = 0; round < Rounds; round++)
        {
            foreach (string file in Directory.GetFiles(Src))
            {
                File.Delete(file);
            }
            long unit = 64 * 1024;
            long size = unit * random.Next(16, 96);
            string clusterSize = random.Next(2) == 0 ? "4096" : "65536";
            long oldSize = unit * random.Next(8, 96);
            RawFile("old.raw", $"{oldSize}", RandomWrites(random, oldSize, 0x10));
            long newSize = unit * random.Next(8, 96);
            string newName;
            if (random.Next(3) == 0)
            {
                Qimg("create", "-q", "-f", "qed", "-o", "cluster_size=4096", InSrc("new.qed"), $"{newSize}");
                Qio("qed", "new.qed", RandomWrites(random, newSize, 0x10));
                newName = "new.qed";
            }
            else
            {
                // A copy of the old base with changes, so that parts agree and parts differ.
                File.Copy(InSrc("old.raw"), InSrc("new.raw"));
                Fixtures.Truncate(Src, "new.raw", newSize);
                Qio("raw", "new.raw", RandomWrites(random, newSize, 0x10));
                newName = "new.raw";
            }
            Qimg("create", "-q", "-f", "qed", "-o", $"cluster_size={clusterSize}", "-b", "old.raw", "-F", "raw", InSrc("ov.qed"), $"{size}");
            Qio("qed", "ov.qed", RandomWrites(random, size, 0x30));
            string format = newName.EndsWith(".qed", StringComparison.Ordinal) ? "qed" : "raw";
            string[] args = random.Next(4) == 0 ? ["-b", ""] : ["-b", newName, "-F", format];
            TestSeed.Report($"round {round}: size {size}, cluster_size {clusterSize}, rebase {string.Join(' ', args)}");
            AssertSameResult("ov.qed", args);
            ran++;
        }
        Assert.Equal(Rounds, ran);
    }

    /// <summary>qemu-io commands writing a few patterns and zeros at random sector-aligned places below <paramref name="limit"/>.</summary>
    private static string[] RandomWrites(Random random, long limit, int patternBase)
    {
        var commands = new List<string>();
        int count = random.Next(1, 8);
        for (int i = 0; i < count; i++)
        {
            long length = 512L * random.Next(1, 512);
            long offset = 512L * random.Next(0, (int)((limit - length) / 512));
            commands.Add(random.Next(5) == 0 ? $"write -z {offset} {length}" : $"write -P {patternBase + random.Next(4)} {offset} {length}");
        }
        return [.. commands];
    }
}
