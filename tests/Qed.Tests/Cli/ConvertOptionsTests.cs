using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed convert</c>'s qemu-img options (<c>-n</c>, <c>--target-is-zero</c>, <c>-B</c>/<c>-F</c>, <c>-S</c>, <c>-m</c>,
/// <c>-W</c>, <c>-C</c>, <c>-c</c>, <c>-p</c>): each output compared with qemu-img convert's on the same input and options,
/// for content (qemu-img compare) and allocation (qemu-img map --output=json), and each refusal with qemu-img's line.
/// </summary>
public partial class ConvertOptionsTests : IDisposable
{
    private const int Cluster = 65536;
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string F(string name) => _dir.File(name);

    private void Img(params string[] args) => Tools.QemuImg(_dir.Path, args);

    private void Io(string format, string file, params string[] commands) => Tools.QemuIo(_dir.Path, format, F(file), commands);

    /// <summary>One extent of qemu-img map's JSON without the host offset (which depends on the order clusters were allocated in).</summary>
    private readonly record struct MapExtent(long Start, long Length, int Depth, bool Present, bool Zero, bool Data)
    {
        public long End => Start + Length;

        public bool SameKind(MapExtent other) => Depth == other.Depth && Present == other.Present && Zero == other.Zero && Data == other.Data;

        public override string ToString() => $"[{Start}, {End}) depth {Depth}{(Present ? " present" : "")}{(Zero ? " zero" : "")}{(Data ? " data" : "")}";
    }

    /// <summary>qemu-img map --output=json of <paramref name="file"/>, host offsets dropped and neighbours of one kind merged.</summary>
    private List<MapExtent> Map(string file, string format)
    {
        string json = Tools.QemuImg(_dir.Path, "map", "--output=json", "-f", format, F(file)).StdOut;
        var merged = new List<MapExtent>();
        foreach (var e in JsonDocument.Parse(json).RootElement.EnumerateArray())
        {
            var extent = new MapExtent(e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("depth").GetInt32(),
                e.GetProperty("present").GetBoolean(), e.GetProperty("zero").GetBoolean(), e.GetProperty("data").GetBoolean());
            if (merged.Count > 0 && merged[^1].SameKind(extent) && merged[^1].End == extent.Start)
            {
                merged[^1] = merged[^1] with { Length = merged[^1].Length + extent.Length };
            }
            else
            {
                merged.Add(extent);
            }
        }
        return merged;
    }

    /// <summary>
    /// Asserts that our output's allocation is qemu-img's. One difference is qemu-img create's, not convert's: it writes
    /// zeros to the first 4 KiB of a new raw file (so that O_DIRECT can probe the alignment later), where ours leaves a
    /// hole; both read as zeros there, which the content comparison checks.
    /// </summary>
    private void AssertSameAllocation(string ours, string qemu, string format)
    {
        var expected = Map(qemu, format);
        var actual = Map(ours, format);
        if (format == "raw" && expected[0] is { Start: 0, Data: true } && actual[0] is { Start: 0, Data: false } && Read(ours, 0, 4096).AsSpan().IndexOfAnyExcept((byte)0) < 0)
        {
            var first = expected[0];
            var hole = new MapExtent(0, 4096, 0, true, true, false);
            var rest = first.Length > 4096 ? [first with { Start = 4096, Length = first.Length - 4096 }] : new List<MapExtent>();
            var patched = new List<MapExtent>();
            foreach (var extent in (IEnumerable<MapExtent>)[hole, .. rest, .. expected.Skip(1)])
            {
                if (patched.Count > 0 && patched[^1].SameKind(extent) && patched[^1].End == extent.Start)
                {
                    patched[^1] = patched[^1] with { Length = patched[^1].Length + extent.Length };
                }
                else
                {
                    patched.Add(extent);
                }
            }
            expected = patched;
        }
        Assert.Equal(expected, actual);
    }

    private void AssertIdentical(string a, string aFormat, string b, string bFormat)
    {
        var compare = Tools.QemuImgRaw(_dir.Path, "compare", "-f", aFormat, "-F", bFormat, F(a), F(b));
        Assert.True(compare.ExitCode == 0 && compare.StdOut == "Images are identical.\n", $"{a} vs {b}: {compare}");
    }

    /// <summary>qemu-img 7.2's assertion failure when concurrent writes (<c>-W</c>) allocate QED clusters.</summary>
    private const string QemuQedAbort = "qed_aio_write_alloc: Assertion `s->allocating_acb == NULL' failed.";

    /// <summary>
    /// Runs <c>qed convert OPTIONS SOURCE ours.EXT</c> and <c>qemu-img convert OPTIONS SOURCE qemu.EXT</c>; both must succeed
    /// and their outputs show the source's disk. qemu-img 7.2 aborts on an assertion in about half the runs of <c>-W</c>
    /// onto QED (<see cref="QemuQedAbort"/>); then its output without <c>-W</c>, which writes the same clusters, is the oracle.
    /// </summary>
    private (string Ours, string Qemu) ConvertBoth(string[] options, string source, string sourceFormat, string format, string ours = "ours", string qemu = "qemu")
    {
        ours = $"{ours}.{format}";
        qemu = $"{qemu}.{format}";
        string[] args = [.. options, "-f", sourceFormat, "-O", format];
        var oracle = Tools.QemuImgRaw(_dir.Path, ["convert", .. args, F(source), F(qemu)]);
        if (oracle.ExitCode != 0)
        {
            Assert.True(format == "qed" && options.Contains("-W") && oracle.ExitCode == 134 && oracle.StdErr.Contains(QemuQedAbort, StringComparison.Ordinal),
                $"qemu-img convert {string.Join(' ', args)}: {oracle}");
            TestSeed.Report($"qemu-img convert {string.Join(' ', args)} aborted ({QemuQedAbort}); the oracle is its output without -W");
            File.Delete(F(qemu));
            Img(["convert", .. args.Where(a => a != "-W"), F(source), F(qemu)]);
        }
        QedCli.Ok(["convert", .. args, F(source), F(ours)]);
        AssertIdentical(source, sourceFormat, qemu, format);
        AssertIdentical(source, sourceFormat, ours, format);
        return (ours, qemu);
    }

    /// <summary>A 3-layer chain: raw base with data and holes, a QED middle with zero clusters over base data, a QED top with small clusters.</summary>
    private void MakeChain()
    {
        Img("create", "-f", "raw", F("base.raw"), "8M");
        Io("raw", "base.raw", "write -P 0x31 0 192k", "write -P 0x32 2M 64k", "write -P 0 3M 128k", "write -P 0x33 5M 4k");
        Img("create", "-f", "qed", "-b", F("base.raw"), "-F", "raw", F("mid.qed"), "8M");
        Io("qed", "mid.qed", "write -P 0x41 64k 64k", "write -z 0 64k", "write -z 2M 64k", "write -P 0x42 4M 64k", "write -P 0 6M 64k");
        Img("create", "-f", "qed", "-o", "cluster_size=4096", "-b", F("mid.qed"), "-F", "qed", F("top.qed"), "12M");
        Io("qed", "top.qed", "write -P 0x51 2M 4k", "write -z 4M 64k", "write -P 0x52 7M 4k", "write -P 0x53 4100k 8k", "write -P 0x54 11M 1k");
    }

    [Theory]
    [InlineData("qed")]
    [InlineData("raw")]
    public void A_chain_with_zero_clusters_and_holes_converts_as_qemu_img_does(string format)
    {
        MakeChain();
        var (ours, qemu) = ConvertBoth([], "top.qed", "qed", format);
        AssertSameAllocation(ours, qemu, format);
    }

    [Theory]
    [InlineData("0", "raw")]
    [InlineData("0", "qed")]
    [InlineData("4k", "raw")]
    [InlineData("4k", "qed")]
    [InlineData("8k", "raw")]
    [InlineData("64k", "raw")]
    [InlineData("64k", "qed")]
    [InlineData("1M", "raw")]
    [InlineData("1M", "qed")]
    [InlineData("1536", "raw")]
    public void Sparse_size_allocates_as_qemu_img_does(string sparse, string format)
    {
        // Raw with holes, allocated zeros (whole and between data), data in partial blocks; a QED overlay with zero clusters.
        Img("create", "-f", "raw", F("src.raw"), "8M");
        Io("raw", "src.raw", "write -P 0x11 0 4k", "write -P 0 4k 60k", "write -P 0x12 64k 4k", "write -P 0x13 1M 512", "write -P 0x14 1032k 512",
            "write -P 0 3M 128k", "write -P 0x15 5M 1M", "write -P 0 6M 8k", "write -P 0x16 6152k 4k");
        Img("create", "-f", "qed", "-b", F("src.raw"), "-F", "raw", F("src.qed"), "8M");
        Io("qed", "src.qed", "write -z 5M 64k", "write -P 0x17 7M 4k");

        var (ours, qemu) = ConvertBoth(["-S", sparse], "src.qed", "qed", format);

        AssertSameAllocation(ours, qemu, format);
        if (sparse == "0")
        {
            // Everything written: one extent of data, as qemu-img's -S 0 leaves it.
            Assert.Equal([new MapExtent(0, 8L << 20, 0, true, false, true)], Map(ours, format));
        }
    }

    [Theory]
    [InlineData("-m", "1")]
    [InlineData("-m", "8", "-W")]
    [InlineData("-m", "16")]
    [InlineData("-W", "-m", "3")]
    public void Parallel_writers_give_qemu_img_s_output(params string[] options)
    {
        Img("create", "-f", "qed", F("src.qed"), "64M");
        var commands = new List<string>();
        var random = new Random(TestSeed.For(nameof(Parallel_writers_give_qemu_img_s_output)));
        for (int i = 0; i < 60; i++)
        {
            long at = random.Next(0, 1024 - 4) * 64L * 1024;
            commands.Add(random.Next(5) == 0 ? $"write -z {at} 64k" : $"write -P {random.Next(1, 256)} {at} {random.Next(1, 9) * 32}k");
        }
        Io("qed", "src.qed", [.. commands]);
        foreach (string format in new[] { "qed", "raw" })
        {
            var (ours, qemu) = ConvertBoth(options, "src.qed", "qed", format);
            AssertSameAllocation(ours, qemu, format);
        }
    }

    /// <summary>
    /// qemu-img 7.2 aborts in about half its runs of <c>-W</c> onto QED (an assertion in qed.c), leaving a partial
    /// output; ours completes every time with qemu-img's in-order result. The runs are shown side by side.
    /// </summary>
    [Fact]
    public void Out_of_order_writes_to_qed_complete_where_qemu_img_aborts()
    {
        Img("create", "-f", "qed", F("src.qed"), "64M");
        var random = new Random(0);
        var commands = new List<string>();
        for (int i = 0; i < 60; i++)
        {
            long at = random.Next(0, 1020) * 64L * 1024;
            commands.Add(random.Next(5) == 0 ? $"write -z {at} 64k" : $"write -P {random.Next(1, 256)} {at} {random.Next(1, 9) * 32}k");
        }
        Io("qed", "src.qed", [.. commands]);
        Img("convert", "-m", "8", "-O", "qed", F("src.qed"), F("in-order.qed"));
        const int Runs = 4;
        int aborts = 0, ran = 0;
        for (int run = 0; run < Runs; run++)
        {
            var qemu = Tools.QemuImgRaw(_dir.Path, "convert", "-W", "-m", "8", "-O", "qed", F("src.qed"), F($"qemu{run}.qed"));
            if (qemu.ExitCode != 0)
            {
                Assert.Equal(134, qemu.ExitCode);
                Assert.Contains(QemuQedAbort, qemu.StdErr);
                aborts++;
            }
            QedCli.Ok("convert", "-W", "-m", "8", "-O", "qed", F("src.qed"), F($"ours{run}.qed"));
            AssertIdentical("src.qed", "qed", $"ours{run}.qed", "qed");
            Assert.Equal(Map("in-order.qed", "qed"), Map($"ours{run}.qed", "qed"));
            Tools.QemuImg(_dir.Path, "check", F($"ours{run}.qed"));
            ran++;
        }
        TestSeed.Report($"convert -W -m 8 -O qed: qemu-img aborted in {aborts} of {Runs} runs, qed completed {ran} of {Runs}");
        Assert.Equal(Runs, ran);
    }

    /// <summary>Reads <paramref name="length"/> bytes of an image's disk through the library.</summary>
    private byte[] Read(string file, long offset, int length)
    {
        using var image = DiskImage.Open(F(file), null, new ImageOpenOptions { ReadOnly = true, ForceShare = true });
        var bytes = new byte[length];
        image.Read(bytes, offset);
        return bytes;
    }

    /// <summary>The ranges where an image itself (depth 0) answers, as [start, end) pairs.</summary>
    private List<(long Start, long End)> OwnRanges(string file)
    {
        var ranges = new List<(long Start, long End)>();
        foreach (var e in Map(file, "qed").Where(e => e.Depth == 0 && e.Present))
        {
            if (ranges.Count > 0 && ranges[^1].End == e.Start)
            {
                ranges[^1] = (ranges[^1].Start, e.End);
            }
            else
            {
                ranges.Add((e.Start, e.End));
            }
        }
        return ranges;
    }

    [Fact]
    public void Backing_output_holds_only_what_differs_from_a_partly_matching_backing()
    {
        Img("create", "-f", "qed", F("base.qed"), "4M");
        Io("qed", "base.qed", "write -P 1 0 256k", "write -P 3 3M 64k");
        Img("create", "-f", "qed", "-b", F("base.qed"), "-F", "qed", F("top.qed"));
        // The same bytes as the base, different bytes, zeros over base data, data where the base has none.
        Io("qed", "top.qed", "write -P 1 0 64k", "write -P 2 128k 64k", "write -z 192k 64k", "write -P 5 1M 64k");

        var (ours, qemu) = ConvertBoth(["-B", F("base.qed"), "-F", "qed"], "top.qed", "qed", "qed");

        // The header names BACKING and its format as create -b does, in both.
        foreach (string key in new[] { "\"backing-filename\": ", "\"full-backing-filename\": " })
        {
            string Line(string file) => Tools.QemuImg(_dir.Path, "info", "--output=json", F(file)).StdOut.Split('\n').Single(l => l.Contains(key));
            Assert.Equal(Line(qemu), Line(ours));
        }
        Assert.Contains(F("base.qed"), Tools.QemuImg(_dir.Path, "info", F(ours)).StdOut);
        Tools.QemuImg(_dir.Path, "check", F(ours));
        // qemu-img copies what the top layer allocated; we write only what differs from BACKING. The one difference: the
        // first cluster, which top rewrote with the base's own bytes.
        var theirs = OwnRanges(qemu);
        var mine = OwnRanges(ours);
        Assert.Equal([(0L, 65536L), (131072L, 262144L), (1048576L, 1114112L)], theirs);
        Assert.Equal([(131072L, 262144L), (1048576L, 1114112L)], mine);
        Assert.Equal(Read("base.qed", 0, Cluster), Read("top.qed", 0, Cluster));
        // The zeros over base data are a zero cluster in both.
        Assert.Contains(Map(ours, "qed"), e => e.Start == 196608 && e.Depth == 0 && e.Zero && e.Present);
    }

    [Fact]
    public void Backing_output_of_a_standalone_source_writes_only_the_differences()
    {
        Img("create", "-f", "qed", F("base.qed"), "4M");
        Io("qed", "base.qed", "write -P 1 0 256k");
        Img("create", "-f", "qed", F("solo.qed"), "4M");
        Io("qed", "solo.qed", "write -P 1 0 128k", "write -P 7 2M 64k");

        var (ours, qemu) = ConvertBoth(["-B", F("base.qed"), "-F", "qed"], "solo.qed", "qed", "qed");

        // qemu-img answers the whole disk in the overlay (data, and zero clusters over everything else); we only zero the
        // base's data that solo does not have and write solo's data the base lacks. Both read as solo.
        Assert.Equal([(0L, 4L << 20)], OwnRanges(qemu));
        Assert.Equal([(131072L, 262144L), (2097152L, 2162688L)], OwnRanges(ours));
        var zeroed = Map(ours, "qed").Single(e => e.Start == 131072);
        Assert.True(zeroed.Zero && zeroed.Present && !zeroed.Data, zeroed.ToString());
    }

    private void WriteGarbage(string name, long size, int seed)
    {
        var bytes = new byte[size];
        new Random(seed).NextBytes(bytes);
        File.WriteAllBytes(F(name), bytes);
    }

    private void MakeSource()
    {
        Img("create", "-f", "qed", F("src.qed"), "4M");
        Io("qed", "src.qed", "write -P 1 0 64k", "write -z 1M 64k", "write -P 0 2M 64k", "write -P 3 3M 4k");
    }

    [Fact]
    public void Existing_raw_target_with_garbage_is_zeroed_where_the_source_reads_zeros()
    {
        MakeSource();
        WriteGarbage("ours.raw", 6L << 20, 1);
        File.Copy(F("ours.raw"), F("qemu.raw"));
        Img("convert", "-n", "-f", "qed", "-O", "raw", F("src.qed"), F("qemu.raw"));
        QedCli.Ok("convert", "-n", "-f", "qed", "-O", "raw", F("src.qed"), F("ours.raw"));

        // Byte for byte qemu-img's result: the source's disk, then the target's own tail past it; holes where it zeroed.
        Assert.Equal(Tools.Sha256OfFile(F("qemu.raw")), Tools.Sha256OfFile(F("ours.raw")));
        Assert.Equal(Map("qemu.raw", "raw"), Map("ours.raw", "raw"));
        Assert.Equal(Read("src.qed", 0, 4 << 20), Read("ours.raw", 0, 4 << 20));
        Assert.NotEqual(new byte[64], Read("ours.raw", 4 << 20, 64));
    }

    [Fact]
    public void Existing_target_with_garbage_is_kept_with_target_is_zero()
    {
        MakeSource();
        WriteGarbage("ours.raw", 4L << 20, 2);
        File.Copy(F("ours.raw"), F("qemu.raw"));
        Img("convert", "-n", "--target-is-zero", "-f", "qed", "-O", "raw", F("src.qed"), F("qemu.raw"));
        QedCli.Ok("convert", "-n", "--target-is-zero", "-f", "qed", "-O", "raw", F("src.qed"), F("ours.raw"));

        // The user said the target reads as zeros: only data is written, the garbage stays where the source is zero.
        Assert.Equal(Tools.Sha256OfFile(F("qemu.raw")), Tools.Sha256OfFile(F("ours.raw")));
        Assert.Equal(Read("src.qed", 0, Cluster), Read("ours.raw", 0, Cluster));
        Assert.NotEqual(new byte[Cluster], Read("ours.raw", 1 << 20, Cluster));
    }

    [Fact]
    public void Existing_qed_target_with_garbage_is_zeroed_as_qemu_img_does()
    {
        MakeSource();
        Img("create", "-f", "qed", F("ours.qed"), "6M");
        Io("qed", "ours.qed", "write -P 9 0 6M");
        File.Copy(F("ours.qed"), F("qemu.qed"));
        Img("convert", "-n", "-f", "qed", "-O", "qed", F("src.qed"), F("qemu.qed"));
        QedCli.Ok("convert", "-n", "-f", "qed", "-O", "qed", F("src.qed"), F("ours.qed"));

        AssertIdentical("qemu.qed", "qed", "ours.qed", "qed");
        Assert.Equal(Read("src.qed", 0, 4 << 20), Read("ours.qed", 0, 4 << 20));
        Assert.Equal(Map("qemu.qed", "qed"), Map("ours.qed", "qed"));
        Tools.QemuImg(_dir.Path, "check", F("ours.qed"));
    }

    [Fact]
    public void Existing_empty_qed_target_reads_the_same_with_fewer_zero_clusters()
    {
        MakeSource();
        Img("create", "-f", "qed", F("ours.qed"), "6M");
        File.Copy(F("ours.qed"), F("qemu.qed"));
        Img("convert", "-n", "-f", "qed", "-O", "qed", F("src.qed"), F("qemu.qed"));
        QedCli.Ok("convert", "-n", "-f", "qed", "-O", "qed", F("src.qed"), F("ours.qed"));

        AssertIdentical("qemu.qed", "qed", "ours.qed", "qed");
        // qemu-img writes zero clusters over the source's zero ranges; where a standalone target's cluster is unallocated it
        // already reads zeros, and we leave it so. Everywhere else the maps agree.
        var theirs = Map("qemu.qed", "qed");
        var mine = Map("ours.qed", "qed");
        int differences = 0;
        for (long at = 0; at < 6L << 20; at += Cluster)
        {
            var a = theirs.Single(e => e.Start <= at && at < e.End);
            var b = mine.Single(e => e.Start <= at && at < e.End);
            if (!a.SameKind(b))
            {
                Assert.True(a is { Present: true, Zero: true, Data: false } && b is { Present: false, Zero: true, Data: false }, $"at {at}: qemu-img {a}, qed {b}");
                differences++;
            }
        }
        // Every cluster of the source's 4 MiB but the two holding data (at 0 and 3M; the one of zeros at 2M reads as zero).
        Assert.Equal(64 - 2, differences);
    }

    public static TheoryData<string, string[]> Refusals() => new()
    {
        { "target-is-zero without -n", ["--target-is-zero", "-O", "raw", "SRC", "OUT"] },
        { "-S not a multiple of 512", ["-S", "1000", "-O", "raw", "SRC", "OUT"] },
        { "-S over 16 MiB", ["-S", "1G", "-O", "raw", "SRC", "OUT"] },
        { "-S not a size", ["-S", "abc", "-O", "raw", "SRC", "OUT"] },
        { "-S negative", ["-S", "-1", "-O", "raw", "SRC", "OUT"] },
        { "-S too large", ["-S", "999999999999999999999", "-O", "raw", "SRC", "OUT"] },
        { "-m 0", ["-m", "0", "-O", "raw", "SRC", "OUT"] },
        { "-m 17", ["-m", "17", "-O", "raw", "SRC", "OUT"] },
        { "-m not a number", ["-m", "x", "-O", "raw", "SRC", "OUT"] },
        { "-m bad octal", ["-m", "08", "-O", "raw", "SRC", "OUT"] },
        { "-c to qed", ["-c", "-O", "qed", "SRC", "OUT"] },
        { "-c to raw", ["-c", "-O", "raw", "SRC", "OUT"] },
        { "-c with -n", ["-c", "-n", "-O", "raw", "SRC", "BIG"] },
        { "-C with -c", ["-C", "-c", "-O", "raw", "SRC", "OUT"] },
        { "-C with -S", ["-C", "-S", "4k", "-O", "raw", "SRC", "OUT"] },
        { "-B without -F", ["-B", "BASE", "-O", "qed", "SRC", "OUT"] },
        { "-B with raw output", ["-B", "BASE", "-F", "qed", "-O", "raw", "SRC", "OUT"] },
        { "-B missing", ["-B", "MISSING", "-F", "qed", "-O", "qed", "SRC", "OUT"] },
        { "-n onto a smaller image", ["-n", "-O", "qed", "SRC", "SMALL"] },
        { "-n with -o", ["-n", "-o", "cluster_size=4k", "-O", "qed", "SRC", "SMALL"] },
        { "-n without a target", ["-n", "-O", "raw", "SRC"] },
    };

    /// <summary>Each refusal is qemu-img's line and exit status; nothing is created and an existing target is unchanged (qemu-img leaves a new image behind when BACKING is missing).</summary>
    [Theory]
    [MemberData(nameof(Refusals))]
    public void Refusals_are_qemu_img_s(string what, string[] template)
    {
        MakeSource();
        Img("create", "-f", "qed", F("base.qed"), "4M");
        Img("create", "-f", "qed", F("small.qed"), "1M");
        WriteGarbage("big.raw", 8L << 20, 3);
        string[] args = [.. template.Select(a => a switch
        {
            "SRC" => F("src.qed"),
            "OUT" => F("out.img"),
            "BASE" => F("base.qed"),
            "MISSING" => F("missing.qed"),
            "SMALL" => F("small.qed"),
            "BIG" => F("big.raw"),
            _ => a,
        })];
        string[] existing = [F("small.qed"), F("big.raw")];
        var before = existing.Select(QedCli.Fingerprint).ToArray();

        var qemu = Tools.QemuImgRaw(_dir.Path, ["convert", .. args]);
        bool qemuLeftOutput = File.Exists(F("out.img"));
        File.Delete(F("out.img"));
        var ours = QedCli.Run(["convert", .. args]);

        Assert.True(qemu.ExitCode == 1, $"{what}: qemu-img {qemu}");
        Assert.True(ours.ExitCode == 1, $"{what}: qed {ours}");
        // qemu-img splits cvtnum's hint over two lines; we print it on one.
        string expected = QedCli.AsQed(qemu.StdErr.Replace("suffixes for\nqemu-img: kilobytes", "suffixes for kilobytes", StringComparison.Ordinal));
        Assert.Equal(expected, ours.StdErr);
        Assert.False(File.Exists(F("out.img")), $"{what}: qed left the output behind");
        Assert.Equal(what == "-B missing", qemuLeftOutput);
        Assert.Equal(before, existing.Select(QedCli.Fingerprint).ToArray());
        Assert.Empty(Directory.GetFiles(_dir.Path, "*.qed-convert-*"));
    }

    [Fact]
    public void Accepted_options_give_qemu_img_s_output()
    {
        MakeChain();
        // -C (copy offloading): qemu-img falls back to copying through memory where it cannot offload; we always do.
        // -t/-T cache modes and -U are accepted as before; -F without -B is ignored by both.
        foreach (string[] options in new[] { new[] { "-C" }, ["-t", "none", "-T", "writeback"], ["-U"], ["-F", "qed"] })
        {
            var (ours, qemu) = ConvertBoth(options, "top.qed", "qed", "qed", "ours" + options.Length, "qemu" + options.Length);
            Assert.Equal(Map(qemu, "qed"), Map(ours, "qed"));
            Assert.DoesNotContain("backing", Tools.QemuImg(_dir.Path, "info", F(ours)).StdOut);
            File.Delete(F(ours));
            File.Delete(F(qemu));
        }
    }

    [Fact]
    public void Progress_has_qemu_img_s_form()
    {
        MakeChain();
        var qemu = Tools.QemuImg(_dir.Path, "convert", "-p", "-O", "qed", F("top.qed"), F("qemu.qed"));
        var ours = QedCli.Ok("convert", "-p", "-O", "qed", F("top.qed"), F("ours.qed"));
        Assert.Matches(ProgressOutput(), qemu.StdOut);
        Assert.Matches(ProgressOutput(), ours.StdOut);
        Assert.Equal("", QedCli.Ok("convert", "-p", "-q", "-O", "qed", F("top.qed"), F("quiet.qed")).StdOut);
    }

    /// <summary>A writer that notes when each progress line arrives.</summary>
    private sealed class TimedWriter(Stopwatch clock) : StringWriter
    {
        private readonly List<(TimeSpan At, string Text)> _writes = [];

        public List<(TimeSpan At, string Text)> Writes
        {
            get
            {
                lock (_writes)
                {
                    return [.. _writes];
                }
            }
        }

        public override void Write(string? value)
        {
            lock (_writes)
            {
                _writes.Add((clock.Elapsed, value ?? ""));
            }
            base.Write(value);
        }
    }

    [Fact]
    public async Task A_long_convert_shows_progress_within_a_second()
    {
        // 96 MiB of data, written by one writer in order: long enough to need many progress lines.
        Img("create", "-f", "raw", F("big.raw"), "96M");
        Io("raw", "big.raw", [.. Enumerable.Range(0, 96).Select(i => $"write -P {i + 1} {i}M 1M")]);
        var clock = Stopwatch.StartNew();
        var stdout = new TimedWriter(clock) { NewLine = "\n" };
        var stderr = new StringWriter();
        var run = Task.Run(() => Qed.Cli.Program.Run(["convert", "-p", "-m", "1", "-O", "qed", F("big.raw"), F("out.qed")], stdout, stderr));

        // Read the output while the convert runs: the first line is there at once.
        var first = TimeSpan.Zero;
        while (stdout.Writes.Count == 0 && !run.IsCompleted)
        {
            await Task.Delay(5, TestContext.Current.CancellationToken);
        }
        first = stdout.Writes.Count > 0 ? stdout.Writes[0].At : clock.Elapsed;
        Assert.Equal(0, await run);
        var total = clock.Elapsed;

        var lines = stdout.Writes.Where(w => w.Text.Contains("/100%)", StringComparison.Ordinal)).ToList();
        var gaps = lines.Zip(lines.Skip(1), (a, b) => b.At - a.At).Append(lines[0].At).ToList();
        TestSeed.Report($"96 MiB convert -p: {total.TotalMilliseconds:F0} ms, {lines.Count} progress lines, first at {first.TotalMilliseconds:F0} ms, longest gap {gaps.Max().TotalMilliseconds:F0} ms");
        Assert.Equal("    (0.00/100%)\r", lines[0].Text);
        Assert.True(first < TimeSpan.FromSeconds(1), $"first progress line after {first}");
        Assert.True(gaps.Max() < TimeSpan.FromSeconds(1), $"{gaps.Max()} without a progress line");
        Assert.InRange(lines.Count, 50, 204);
        Assert.Matches(ProgressOutput(), stdout.ToString());
        AssertIdentical("big.raw", "raw", "out.qed", "qed");
    }

    [GeneratedRegex(@"^    \(0\.00/100%\)\r(    \(\d{1,3}\.\d\d/100%\)\r)*    \(100\.00/100%\)\r\n$")]
    private static partial Regex ProgressOutput();
}
