using System.Text.Json;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed dd</c>: the output holds exactly the bytes GNU dd copies from the same range of the input (GNU dd run at test
/// time on qemu-img's flattened copy of the input), where qemu-img 7.2 sizes it <c>count*bs - skip*bs</c> (shown side by
/// side); raw and QED output, through a backing chain; sparse output; qemu-img dd's messages for bad operands; an
/// existing output left as it was when the copy fails.
/// </summary>
public sealed class DdCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A 1 MiB QED overlay over a raw base: base data, overlay data, a zero cluster, unallocated ranges; and its flattened copy.</summary>
    private (string Image, string Flat) Input()
    {
        string baseRaw = _dir.File("base.raw");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "raw", baseRaw, "1M");
        Tools.QemuIo(_dir.Path, "raw", baseRaw, "write -P 1 0 192k", "write -P 6 900k 4k");
        string image = _dir.File("in.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", image, "1M");
        Tools.QemuIo(_dir.Path, "qed", image, "write -P 2 100000 70000", "write -z 128k 64k", "write -P 3 500k 3", "write -P 4 1048000 576");
        string flat = _dir.File("in.raw");
        Tools.QemuImg(_dir.Path, "convert", "-O", "raw", image, flat);
        return (image, flat);
    }

    /// <summary>What GNU dd writes for these operands from the flattened input.</summary>
    private byte[] GnuDd(string flat, string[] operands)
    {
        string output = _dir.File("gnu.out");
        File.Delete(output);
        var result = Tools.Run("dd", [$"if={flat}", $"of={output}", "status=none", .. operands]);
        Assert.True(result.ExitCode == 0, $"dd {string.Join(' ', operands)}: {result}");
        return File.ReadAllBytes(output);
    }

    private byte[] Flattened(string image, string format)
    {
        string flat = _dir.File("check.raw");
        Tools.QemuImg(_dir.Path, "convert", "-f", format, "-O", "raw", image, flat);
        byte[] bytes = File.ReadAllBytes(flat);
        File.Delete(flat);
        return bytes;
    }

    // GNU dd takes bs=64K, not 64k; the qed/qemu-img spelling is used for ours and the byte count for GNU dd.
    private static readonly (string[] Ours, string[] Gnu)[] s_ranges =
    [
        ([], []),
        (["bs=64k", "skip=1", "count=1"], ["bs=65536", "skip=1", "count=1"]),
        (["bs=64k", "skip=1", "count=2"], ["bs=65536", "skip=1", "count=2"]),
        (["bs=64k", "count=1"], ["bs=65536", "count=1"]),
        (["bs=64k", "skip=3"], ["bs=65536", "skip=3"]),
        (["bs=1000", "skip=99", "count=3"], ["bs=1000", "skip=99", "count=3"]),
        (["bs=1000", "skip=1000", "count=100"], ["bs=1000", "skip=1000", "count=100"]),
        (["bs=1.5k", "skip=7"], ["bs=1536", "skip=7"]),
        (["bs=1M"], ["bs=1048576"]),
        (["bs=1M", "count=0"], ["bs=1048576", "count=0"]),
        (["bs=4k", "skip=256"], ["bs=4096", "skip=256"]),
        (["skip=1k", "count=1k"], ["skip=1024", "count=1024"]),
        (["bs=7", "skip=14285", "count=100"], ["bs=7", "skip=14285", "count=100"]),
    ];

    [Fact]
    public void Output_holds_what_GNU_dd_copies_in_raw_and_qed()
    {
        var (image, flat) = Input();
        int compared = 0;
        foreach (var (ours, gnu) in s_ranges)
        {
            byte[] expected = GnuDd(flat, gnu);
            string raw = _dir.File("out.raw");
            var result = QedCli.Run(["dd", .. ours, $"if={image}", $"of={raw}"]);
            Assert.True(result.ExitCode == 0 && result.StdOut == "" && result.StdErr == "", $"dd {string.Join(' ', ours)}: {result}");
            Assert.True(expected.AsSpan().SequenceEqual(File.ReadAllBytes(raw)), $"dd {string.Join(' ', ours)}: raw output differs from GNU dd's {expected.Length} bytes");

            string qed = _dir.File("out.qed");
            QedCli.Ok(["dd", "-O", "qed", .. ours, $"if={image}", $"of={qed}"]);
            byte[] padded = new byte[(expected.Length + 511) / 512 * 512];
            expected.CopyTo(padded, 0);
            Assert.True(padded.AsSpan().SequenceEqual(Flattened(qed, "qed")), $"dd -O qed {string.Join(' ', ours)}: QED output differs");
            Tools.QemuImg(_dir.Path, "check", qed);
            compared++;
        }
        Assert.Equal(s_ranges.Length, compared);
    }

    [Fact]
    public void Qemu_img_sizes_the_output_count_minus_skip_where_we_copy_the_range()
    {
        var (image, flat) = Input();
        string qemuOut = _dir.File("qemu.raw");
        string ourOut = _dir.File("ours.raw");
        string[] operands = ["bs=64k", "skip=1", "count=1"];
        Tools.QemuImg(_dir.Path, ["dd", "-f", "qed", .. operands, $"if={image}", $"of={qemuOut}"]);
        QedCli.Ok(["dd", .. operands, $"if={image}", $"of={ourOut}"]);

        // qemu-img 7.2: count*bs - skip*bs = 0 bytes. GNU dd, and qed: the second 64 KiB block.
        Assert.Equal(0, new FileInfo(qemuOut).Length);
        Assert.Equal(65536, new FileInfo(ourOut).Length);
        Assert.Equal(GnuDd(flat, ["bs=65536", "skip=1", "count=1"]), File.ReadAllBytes(ourOut));
        Assert.Equal(File.ReadAllBytes(flat).AsSpan(65536, 65536).ToArray(), File.ReadAllBytes(ourOut));

        // skip=1 count=2: qemu-img copies one block (64 KiB), GNU dd and qed two.
        Tools.QemuImg(_dir.Path, ["dd", "-f", "qed", "bs=64k", "skip=1", "count=2", $"if={image}", $"of={qemuOut}"]);
        QedCli.Ok(["dd", "bs=64k", "skip=1", "count=2", $"if={image}", $"of={ourOut}"]);
        Assert.Equal(65536, new FileInfo(qemuOut).Length);
        Assert.Equal(File.ReadAllBytes(flat).AsSpan(65536, 131072).ToArray(), File.ReadAllBytes(ourOut));

        // Without skip the two agree.
        Tools.QemuImg(_dir.Path, ["dd", "-f", "qed", "bs=64k", "count=3", $"if={image}", $"of={qemuOut}"]);
        QedCli.Ok(["dd", "bs=64k", "count=3", $"if={image}", $"of={ourOut}"]);
        Assert.Equal(File.ReadAllBytes(qemuOut), File.ReadAllBytes(ourOut));
    }

    [Fact]
    public void A_raw_input_of_a_partial_sector_is_the_disk_qemu_shows()
    {
        // QEMU shows a 300000-byte raw file as a 300032-byte disk (whole sectors, the tail reading as zeros); qed reads
        // the same disk, so its output equals qemu-img dd's, where GNU dd on the file itself stops at 300000 bytes.
        string input = _dir.File("odd.raw");
        File.WriteAllBytes(input, [.. Enumerable.Range(0, 300000).Select(i => (byte)(i % 251 + 1))]);
        string qemuOut = _dir.File("q.raw");
        string ourOut = _dir.File("o.raw");
        Tools.QemuImg(_dir.Path, "dd", "-f", "raw", "bs=64k", "skip=4", $"if={input}", $"of={qemuOut}");
        QedCli.Ok("dd", "bs=64k", "skip=4", $"if={input}", $"of={ourOut}");
        Assert.Equal(300032 - 4 * 65536, new FileInfo(ourOut).Length);
        Assert.Equal(File.ReadAllBytes(qemuOut), File.ReadAllBytes(ourOut));
        Assert.Equal(300000 - 4 * 65536, GnuDd(input, ["bs=65536", "skip=4"]).Length);
    }

    [Fact]
    public void Zeros_are_not_written()
    {
        // A 1 GiB QED image with 64 KiB of data at 512 MiB: the raw output has one data extent, the QED output one cluster.
        string image = _dir.File("sparse.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", image, "1G");
        Tools.QemuIo(_dir.Path, "qed", image, "write -P 8 512M 64k", "write -P 0 600M 1M");
        string raw = _dir.File("sparse.raw");
        string qed = _dir.File("sparse-out.qed");
        QedCli.Ok("dd", "bs=1M", "skip=256", $"if={image}", $"of={raw}");
        QedCli.Ok("dd", "-O", "qed", "bs=1M", "skip=256", $"if={image}", $"of={qed}");
        Assert.Equal(768L << 20, new FileInfo(raw).Length);
        foreach (var (file, format) in new[] { (raw, "raw"), (qed, "qed") })
        {
            using var map = JsonDocument.Parse(Tools.QemuImg(_dir.Path, "map", "-f", format, "--output=json", file).StdOut);
            var data = map.RootElement.EnumerateArray().Where(e => e.GetProperty("data").GetBoolean()).ToList();
            Assert.Single(data);
            Assert.Equal(256L << 20, data[0].GetProperty("start").GetInt64());
            Assert.Equal(65536, data[0].GetProperty("length").GetInt64());
        }
        Assert.Equal(Tools.QemuFlattenDigest(_dir.Path, raw, "raw"), Tools.QemuFlattenDigest(_dir.Path, qed));
    }

    [Theory]
    [InlineData("bs=0", "if=@in.raw", "of=@o.raw")]
    [InlineData("bs=3G", "if=@in.raw", "of=@o.raw")]
    [InlineData("foo=1", "if=@in.raw", "of=@o.raw")]
    [InlineData("x", "if=@in.raw", "of=@o.raw")]
    [InlineData("if=@in.raw", "of=@o.raw", "extra")]
    [InlineData("ifx=@in.raw", "of=@o.raw")]
    [InlineData("bs=abc", "if=@in.raw", "of=@o.raw")]
    [InlineData("count=-1", "if=@in.raw", "of=@o.raw")]
    [InlineData("skip=1x", "if=@in.raw", "of=@o.raw")]
    [InlineData("if=@in.raw")]
    [InlineData("of=@o.raw")]
    [InlineData()]
    [InlineData("if=@missing.raw", "of=@o.raw")]
    [InlineData("-O", "foo", "if=@in.raw", "of=@o.raw")]
    [InlineData("-f", "qed", "if=@in.raw", "of=@o.raw")]
    [InlineData("if=@in.raw", "of=@nodir/o.raw")]
    [InlineData("-x", "if=@in.raw", "of=@o.raw")]
    [InlineData("-O")]
    public void Refusals_are_qemu_img_dd_s(params string[] template)
    {
        File.WriteAllBytes(_dir.File("in.raw"), new byte[4096]);
        string[] args = ["dd", .. template.Select(a => a.Replace("@", _dir.Path + "/", StringComparison.Ordinal))];
        var qemu = Tools.QemuImgRaw(_dir.Path, args);
        var ours = QedCli.Run(args);
        Assert.Equal(1, qemu.ExitCode);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal("", ours.StdOut);
        Assert.False(File.Exists(_dir.File("o.raw")));
        // qemu-img wraps cvtnum's message over two lines where qed prints one, and names a missing file twice.
        string qemuText = string.Join(" ", QedCli.Lines(qemu.StdErr).Select(QedCli.AsQed)).Replace(" qed: ", " ", StringComparison.Ordinal);
        qemuText = System.Text.RegularExpressions.Regex.Replace(qemuText, "(Could not open '[^']*': )\\1", "$1");
        // Where qed says more (what it found instead of the format's magic, say), qemu-img's line is where it starts.
        Assert.StartsWith(qemuText, string.Join(" ", QedCli.Lines(ours.StdErr)), StringComparison.Ordinal);
    }

    [Fact]
    public void Skipping_past_the_end_warns_and_writes_an_empty_output_as_qemu_img()
    {
        string input = _dir.File("in.raw");
        File.WriteAllBytes(input, new byte[300 * 1024]);
        string[] operands = ["bs=64k", "skip=10", $"if={input}"];
        var qemu = Tools.QemuImgRaw(_dir.Path, ["dd", .. operands, $"of={_dir.File("q.raw")}"]);
        var ours = QedCli.Run(["dd", .. operands, $"of={_dir.File("o.raw")}"]);
        Assert.Equal(0, qemu.ExitCode);
        Assert.Equal(0, ours.ExitCode);
        Assert.Equal(QedCli.AsQed(qemu.StdErr), ours.StdErr);
        Assert.Equal(0, new FileInfo(_dir.File("q.raw")).Length);
        Assert.Equal(0, new FileInfo(_dir.File("o.raw")).Length);
    }

    [Fact]
    public void A_failed_copy_leaves_an_existing_output_as_it_was()
    {
        // Data in cluster 0, then an L1 entry that points past the end of the file: reading the second table fails.
        string input = _dir.File("bad.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", input, "4G");
        Tools.QemuIo(_dir.Path, "qed", input, "write -P 1 0 64k");
        Tools.PokeU64(input, 65536 + 8, 0x1000_0000);
        string ours = _dir.File("ours.raw");
        string theirs = _dir.File("theirs.raw");
        File.WriteAllText(ours, "precious");
        File.WriteAllText(theirs, "precious");
        string before = QedCli.Fingerprint(ours);

        var result = QedCli.Run("dd", "bs=1M", $"if={input}", $"of={ours}");
        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("qed: error while reading from input image file: ", result.StdErr, StringComparison.Ordinal);
        Assert.Equal(before, QedCli.Fingerprint(ours));
        // No hidden partial output is left beside it.
        Assert.Equal(new[] { input, ours, theirs }.Order(StringComparer.Ordinal), Directory.GetFiles(_dir.Path).Order(StringComparer.Ordinal));

        // qemu-img dd fails the same way, after replacing the file with its partial output.
        var qemu = Tools.QemuImgRaw(_dir.Path, "dd", "-f", "qed", "bs=1M", $"if={input}", $"of={theirs}");
        Assert.Equal(1, qemu.ExitCode);
        Assert.Equal("qemu-img: error while reading from input image file: Invalid argument\n", qemu.StdErr);
        Assert.NotEqual(before, QedCli.Fingerprint(theirs));
    }

    [Fact]
    public void The_input_is_never_the_output()
    {
        var (image, _) = Input();
        string before = QedCli.Fingerprint(image);
        foreach (string output in new[] { image, _dir.File("base.raw") })
        {
            var result = QedCli.Run("dd", $"if={image}", $"of={output}");
            Assert.Equal(1, result.ExitCode);
            Assert.Contains("which the input reads from; refusing to overwrite it", result.StdErr, StringComparison.Ordinal);
        }
        Assert.Equal(before, QedCli.Fingerprint(image));
    }
}
