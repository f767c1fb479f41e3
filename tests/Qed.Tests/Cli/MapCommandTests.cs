using System.Text.Json;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed map</c> against <c>qemu-img map</c> run at test time on the same images: human output and JSON byte for byte
/// (QED over raw backing files, a backing file in another directory, raw files with holes, start offsets and lengths,
/// unaligned ranges, ranges past the end, an NBD export), the same refusals, and the image on which qemu-img 7.2 aborts.
/// </summary>
public sealed class MapCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static readonly string[][] s_ranges =
    [
        [],
        ["--start-offset=1M", "--max-length=2M"],
        ["--start-offset=100", "--max-length=1000"],
        ["--start-offset=2162688"],
        ["--max-length=0"],
        ["--start-offset=1T"],
    ];

    [Fact]
    public void Output_equals_qemu_img_map_on_chains_raw_files_and_ranges()
    {
        // Overlay over a raw base: base data, overlay data, a zero cluster, unallocated beyond the base's end.
        string baseRaw = _dir.File("b.raw");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "raw", baseRaw, "4M");
        Tools.QemuIo(_dir.Path, "raw", baseRaw, "write -P 1 0 1M");
        string overlay = _dir.File("o.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-b", "b.raw", "-F", "raw", overlay, "8M");
        Tools.QemuIo(_dir.Path, "qed", overlay, "write -P 2 2M 64k", "write -z 3M 1M");

        // A backing file named relative to an overlay in a subdirectory.
        Directory.CreateDirectory(_dir.File("sub"));
        string subBase = _dir.File("sub/b2.raw");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "raw", subBase, "2M");
        Tools.QemuIo(_dir.Path, "raw", subBase, "write 512k 64k");
        string subOverlay = _dir.File("sub/o2.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-b", "b2.raw", "-F", "raw", subOverlay, "4M");
        Tools.QemuIo(_dir.Path, "qed", subOverlay, "write 1M 8k");

        // A raw file that is all hole, and one with data between holes.
        string hole = _dir.File("h.raw");
        File.WriteAllBytes(hole, []);
        using (var handle = File.OpenHandle(hole, FileMode.Open, FileAccess.ReadWrite))
        {
            RandomAccess.SetLength(handle, 3 << 20);
        }

        int compared = 0;
        foreach (string image in new[] { overlay, subOverlay, hole, baseRaw })
        {
            foreach (string[] range in s_ranges)
            {
                foreach (string output in new[] { "human", "json" })
                {
                    string[] args = ["map", $"--output={output}", .. range, image];
                    var qemu = Tools.QemuImg(_dir.Path, args);
                    var ours = QedCli.Ok(args);
                    Assert.True(qemu.StdOut == ours.StdOut, $"qed {string.Join(' ', args)}:\nqemu-img:\n{qemu.StdOut}\nqed:\n{ours.StdOut}");
                    compared++;
                }
            }
        }
        Assert.Equal(4 * s_ranges.Length * 2, compared);
    }

    [Fact]
    public async Task Output_equals_qemu_img_map_over_nbd()
    {
        string baseRaw = _dir.File("b.raw");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "raw", baseRaw, "4M");
        Tools.QemuIo(_dir.Path, "raw", baseRaw, "write -P 1 0 1M");
        string overlay = _dir.File("o.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-b", "b.raw", "-F", "raw", overlay, "8M");
        Tools.QemuIo(_dir.Path, "qed", overlay, "write -P 2 2M 64k", "write -z 3M 1M");

        await using var server = Qed.Tests.Nbd.NbdTestServer.Start(_dir.Path, overlay, readOnly: true);
        foreach (string output in new[] { "human", "json" })
        {
            string[] args = ["map", $"--output={output}", server.Uri()];
            var qemu = Tools.QemuImg(_dir.Path, args);
            var ours = QedCli.Ok(args);
            Assert.True(qemu.StdOut == ours.StdOut, $"qed {string.Join(' ', args)}:\nqemu-img:\n{qemu.StdOut}\nqed:\n{ours.StdOut}");
        }
    }

    [Theory]
    [InlineData("--start-offset=x")]
    [InlineData("--max-length=-1")]
    [InlineData("--output=xml")]
    [InlineData("@/missing.qed")]
    [InlineData("@/a.qed", "@/b.qed")]
    public void Refusals_are_qemu_img_s(params string[] template)
    {
        string[] args = ["map", .. template.Select(a => a.Replace("@", _dir.Path, StringComparison.Ordinal))];
        if (!args.Any(a => a.EndsWith(".qed", StringComparison.Ordinal)))
        {
            string image = _dir.File("i.qed");
            Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", image, "1M");
            args = [.. args, image];
        }

        var qemu = Tools.QemuImgRaw(_dir.Path, args);
        var ours = QedCli.Run(args);
        Assert.Equal(1, qemu.ExitCode);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal("", ours.StdOut);
        // qemu-img wraps cvtnum's message over two lines, where qed prints one, and names a missing file twice
        // ("Could not open 'F': Could not open 'F': ..."), where qed names it once, as every qed command does.
        string qemuFirst = string.Join(" ", QedCli.Lines(qemu.StdErr).Select(QedCli.AsQed)).Replace(" qed: ", " ", StringComparison.Ordinal);
        qemuFirst = System.Text.RegularExpressions.Regex.Replace(qemuFirst, "(Could not open '[^']*': )\\1", "$1");
        Assert.StartsWith(QedCli.Lines(ours.StdErr)[0], qemuFirst, StringComparison.Ordinal);
    }

    [Fact]
    public void A_run_of_8_GiB_inside_one_L2_table_is_mapped_where_qemu_img_aborts()
    {
        // 64 KiB clusters and table_size 16: one L2 table maps 8 GiB, and qemu-img 7.2's block-status loop asserts on it.
        string image = _dir.File("big.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=65536,table_size=16", image, "8G");
        Tools.QemuIo(_dir.Path, "qed", image, "write 0 4k");

        var qemu = Tools.QemuImgRaw(_dir.Path, "map", "--output=json", image);
        Assert.NotEqual(0, qemu.ExitCode); // aborts (134) in 7.2; if a fixed qemu-img answers, it must answer as we do
        var ours = QedCli.Ok("map", "--output=json", image);
        using var map = JsonDocument.Parse(ours.StdOut);
        var extents = map.RootElement.EnumerateArray().ToList();
        Assert.Equal(2, extents.Count);
        Assert.Equal((0L, 65536L, true, true), (extents[0].GetProperty("start").GetInt64(), extents[0].GetProperty("length").GetInt64(),
            extents[0].GetProperty("data").GetBoolean(), extents[0].GetProperty("present").GetBoolean()));
        Assert.Equal((65536L, (8L << 30) - 65536, false, true), (extents[1].GetProperty("start").GetInt64(), extents[1].GetProperty("length").GetInt64(),
            extents[1].GetProperty("present").GetBoolean(), extents[1].GetProperty("zero").GetBoolean()));
    }
}
