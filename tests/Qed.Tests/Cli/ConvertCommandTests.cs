using System.Text.RegularExpressions;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary><c>qed convert</c>: the output equals the source for qemu-img compare, passes qemu-img check, and stays sparse.</summary>
public partial class ConvertCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string F(string name) => _dir.File(name);

    private void Img(params string[] args) => Tools.QemuImg(_dir.Path, args);

    private void Io(string format, string file, params string[] commands) => Tools.QemuIo(_dir.Path, format, F(file), commands);

    /// <summary>
    /// Guest ranges that <c>qemu-img map --output=json</c> shows holding data, as "start+length" strings; neighbours are
    /// joined, since map splits a range where the clusters' places in the file are not consecutive (which depends on the
    /// order parallel writers allocated them in, not on what is allocated).
    /// </summary>
    private string[] DataExtents(string file, string format)
    {
        string map = Tools.QemuImg(_dir.Path, "map", "--output=json", "-f", format, F(file)).StdOut;
        var ranges = new List<(long Start, long End)>();
        foreach (var m in MapEntry().Matches(map).Where(m => m.Groups["data"].Value == "true"))
        {
            long start = long.Parse(m.Groups["start"].Value), end = start + long.Parse(m.Groups["length"].Value);
            if (ranges.Count > 0 && ranges[^1].End == start)
            {
                ranges[^1] = (ranges[^1].Start, end);
            }
            else
            {
                ranges.Add((start, end));
            }
        }
        return [.. ranges.Select(r => $"{r.Start}+{r.End - r.Start}")];
    }

    private void AssertSameDisk(string source, string sourceFormat, string output, string outputFormat)
    {
        var compare = Tools.QemuImgRaw(_dir.Path, "compare", "-f", sourceFormat, "-F", outputFormat, F(source), F(output));
        Assert.True(compare.ExitCode == 0, compare.ToString());
        Assert.Equal("Images are identical.\n", compare.StdOut);
    }

    private void AssertChecksClean(string file)
    {
        var check = Tools.QemuImgRaw(_dir.Path, "check", F(file));
        Assert.True(check.ExitCode == 0, check.ToString());
    }

    [Fact]
    public void Qed_to_raw_keeps_holes()
    {
        Img("create", "-f", "qed", "-o", "cluster_size=4096,table_size=2", F("src.qed"), "16M");
        Io("qed", "src.qed", "write -P 0x11 0 4k", "write -P 0x22 6k 1k", "write -P 0x33 1M 12k", "write -P 0x44 16380k 4k", "write -z 8M 64k");

        var result = QedCli.Run("convert", "-f", "qed", "-O", "raw", F("src.qed"), F("out.raw"));

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("", result.StdOut);
        AssertSameDisk("src.qed", "qed", "out.raw", "raw");
        Assert.Equal(16L << 20, new FileInfo(F("out.raw")).Length);
        // Only the written 4 KiB pieces are data; everything else is a hole in the raw file.
        Assert.Equal(["0+8192", "1048576+12288", "16773120+4096"], DataExtents("out.raw", "raw"));
    }

    [Fact]
    public void Raw_to_qed_allocates_only_clusters_with_data()
    {
        Img("create", "-f", "raw", F("src.raw"), "64M");
        // A data cluster, a cluster of explicit zeros (stored as data in the raw file), and a partial cluster at the end.
        Io("raw", "src.raw", "write -P 1 0 1M", "write -P 0 8M 1M", "write -P 2 30M 1M", "write -P 3 63M 5k");

        QedCli.Ok("convert", "-O", "qed", F("src.raw"), F("out.qed"));

        AssertSameDisk("src.raw", "raw", "out.qed", "qed");
        AssertChecksClean("out.qed");
        Assert.Equal(["0+1048576", "31457280+1048576", "66060288+65536"], DataExtents("out.qed", "qed"));
        string info = Tools.QemuImg(_dir.Path, "info", "--output=json", F("out.qed")).StdOut;
        Assert.Contains("\"virtual-size\": 67108864", info, StringComparison.Ordinal);
        Assert.DoesNotContain("backing", info, StringComparison.Ordinal);
    }

    [Fact]
    public void Qed_with_backing_chain_becomes_one_standalone_qed()
    {
        Img("create", "-f", "raw", F("base.raw"), "4M");
        Io("raw", "base.raw", "write -P 0xb0 0 4M");
        Img("create", "-f", "qed", "-b", "base.raw", "-F", "raw", F("mid.qed"));
        Io("qed", "mid.qed", "write -P 0xa1 64k 8k", "write -z 128k 64k", "write -z 2M 1M");
        Img("create", "-f", "qed", "-o", "cluster_size=16384,table_size=2", "-b", "mid.qed", "-F", "qed", F("top.qed"), "6M");
        Io("qed", "top.qed", "write -P 0xa2 68k 1k", "write -P 0xa3 5M 16k");
        string before = QedCli.Fingerprint(F("top.qed"));

        QedCli.Ok("convert", "-O", "qed", "-o", "cluster_size=4k,table_size=2", F("top.qed"), F("flat.qed"));

        AssertSameDisk("top.qed", "qed", "flat.qed", "qed");
        AssertChecksClean("flat.qed");
        Assert.Equal(before, QedCli.Fingerprint(F("top.qed")));
        string info = Tools.QemuImg(_dir.Path, "info", F("flat.qed")).StdOut;
        Assert.Contains("cluster_size: 4096", info, StringComparison.Ordinal);
        Assert.DoesNotContain("backing", info, StringComparison.Ordinal);
        // The zeroed ranges of mid (zero clusters over backing data) and the space past the 4 MiB backing file stay unallocated.
        Assert.Equal(["0+131072", "196608+1900544", "3145728+1048576", "5242880+16384"], DataExtents("flat.qed", "qed"));
        Assert.Equal(Tools.QemuFlattenDigest(_dir.Path, F("top.qed")), Tools.QemuFlattenDigest(_dir.Path, F("flat.qed")));
    }

    [Fact]
    public void Raw_file_with_a_partial_sector_converts_like_qemu_img()
    {
        File.WriteAllText(F("odd.raw"), "hello\n");
        Img("convert", "-O", "raw", F("odd.raw"), F("theirs.raw"));
        Img("convert", "-O", "qed", F("odd.raw"), F("theirs.qed"));

        QedCli.Ok("convert", "-O", "raw", F("odd.raw"), F("ours.raw"));
        QedCli.Ok("convert", "-O", "qed", F("odd.raw"), F("ours.qed"));

        Assert.Equal(File.ReadAllBytes(F("theirs.raw")), File.ReadAllBytes(F("ours.raw")));
        Assert.Equal(Tools.QemuFlattenDigest(_dir.Path, F("theirs.qed")), Tools.QemuFlattenDigest(_dir.Path, F("ours.qed")));
    }

    [Fact]
    public void Empty_and_zero_size_images_convert()
    {
        Img("create", "-f", "qed", F("zero.qed"), "0");
        Img("create", "-f", "qed", F("empty.qed"), "3M");
        QedCli.Ok("convert", "-O", "qed", F("zero.qed"), F("zero-out.qed"));
        QedCli.Ok("convert", "-O", "qed", F("empty.qed"), F("empty-out.qed"));
        QedCli.Ok("convert", "-O", "raw", F("empty.qed"), F("empty-out.raw"));
        AssertSameDisk("zero.qed", "qed", "zero-out.qed", "qed");
        AssertSameDisk("empty.qed", "qed", "empty-out.qed", "qed");
        Assert.Empty(DataExtents("empty-out.qed", "qed"));
        Assert.Empty(DataExtents("empty-out.raw", "raw"));
        // A fresh image with nothing written is byte-identical to what create makes.
        Img("create", "-f", "qed", F("fresh.qed"), "3M");
        Assert.Equal(File.ReadAllBytes(F("fresh.qed")), File.ReadAllBytes(F("empty-out.qed")));
    }

    [Fact]
    public void Progress_uses_qemu_img_format()
    {
        Img("create", "-f", "raw", F("src.raw"), "8M");
        Io("raw", "src.raw", "write -P 7 1M 1M");

        var result = QedCli.Ok("convert", "-p", "-O", "qed", F("src.raw"), F("out.qed"));

        Assert.Matches(@"^    \(0\.00/100%\)\r(    \(\d{1,3}\.\d\d/100%\)\r)*    \(100\.00/100%\)\r\n$", result.StdOut);
        var quiet = QedCli.Ok("convert", "-p", "-q", "-O", "qed", F("src.raw"), F("out2.qed"));
        Assert.Equal("", quiet.StdOut);
    }

    [Fact]
    public void Failures_leave_no_output_and_keep_existing_files()
    {
        Img("create", "-f", "qed", F("src.qed"), "1M");
        File.WriteAllText(F("existing.qed"), "keep me");
        string kept = QedCli.Fingerprint(F("existing.qed"));

        AssertFails(["convert", "-O", "qed", F("missing.qed"), F("out1.qed")], $"qed: Could not open '{F("missing.qed")}': No such file or directory");
        Assert.False(File.Exists(F("out1.qed")));

        AssertFails(["convert", "-O", "qed", "-o", "cluster_size=3000", F("src.qed"), F("existing.qed")],
            $"qed: {F("existing.qed")}: error while converting qed: QED cluster size must be within range [4096, 67108864] and power of 2");
        Assert.Equal(kept, QedCli.Fingerprint(F("existing.qed")));

        AssertFails(["convert", "-O", "vmdk", F("src.qed"), F("out2")], "qed: Unknown file format 'vmdk'");
        AssertFails(["convert", "-O", "qed", "-o", "foo=1", F("src.qed"), F("out3")], $"qed: {F("out3")}: Invalid parameter 'foo'");
        AssertFails(["convert", F("src.qed")], "qed: Must specify image file name");

        string source = QedCli.Fingerprint(F("src.qed"));
        AssertFails(["convert", "-O", "qed", F("src.qed"), F("src.qed")], $"qed: {F("src.qed")}: the destination is");
        Assert.Equal(source, QedCli.Fingerprint(F("src.qed")));
    }

    [Fact]
    public void A_corrupt_source_fails_like_qemu_img_and_removes_the_partial_output()
    {
        // Fixture F16 of QED-FORMAT.md §13.5: L2[1] points beyond the end of the file.
        Img("create", "-f", "qed", F("f16.qed"), "16M");
        Io("qed", "f16.qed", "write -P 0x16 0 64k", "write -P 0x17 64k 64k");
        Tools.PokeU64(F("f16.qed"), 0x60008, 0x10000000);

        var qemu = Tools.QemuImgRaw(_dir.Path, "convert", "-O", "raw", F("f16.qed"), F("theirs.raw"));
        var result = QedCli.Run("convert", "-O", "raw", F("f16.qed"), F("ours.raw"));

        Assert.Equal(1, qemu.ExitCode);
        Assert.Equal(1, result.ExitCode);
        Assert.Equal("qemu-img: error while reading block status at offset 65536: Invalid argument\n", qemu.StdErr);
        Assert.StartsWith("qed: error while reading block status at offset 65536: Invalid argument", result.StdErr, StringComparison.Ordinal);
        Assert.Single(QedCli.Lines(result.StdErr));
        Assert.False(File.Exists(F("ours.raw")));
        Assert.Empty(HiddenFiles());
    }

    [Theory]
    [InlineData("raw")]
    [InlineData("qed")]
    public void A_failure_half_way_keeps_the_old_destination_and_leaves_no_hidden_file(string format)
    {
        // 16 MiB of data, then an L2 entry beyond the end of the file at 24 MiB: the copy writes a third of the disk, then fails.
        Img("create", "-f", "qed", "-o", "cluster_size=65536", F("src.qed"), "32M");
        Io("qed", "src.qed", "write -P 0x5a 0 16M", "write -P 0x6b 24M 64k");
        long table = (long)BitConverter.ToUInt64(File.ReadAllBytes(F("src.qed")), 65536);
        Tools.PokeU64(F("src.qed"), table + (24 << 20) / 65536 * 8, 0x10000000);
        string source = QedCli.Fingerprint(F("src.qed"));
        File.WriteAllText(F("old.img"), "the previous image, which must survive");
        string old = QedCli.Fingerprint(F("old.img"));

        var result = QedCli.Run("convert", "-p", "-O", format, F("src.qed"), F("old.img"));

        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith($"qed: error while reading block status at offset {24 << 20}: Invalid argument", Assert.Single(QedCli.Lines(result.StdErr)), StringComparison.Ordinal);
        // Evidence that the copy was under way when it failed: progress was reported past 0 and short of 100.
        double reached = Progress().Matches(result.StdOut).Select(m => double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).Max();
        Assert.InRange(reached, 10, 90);
        Assert.Equal(old, QedCli.Fingerprint(F("old.img")));
        Assert.Equal(source, QedCli.Fingerprint(F("src.qed")));
        Assert.Empty(HiddenFiles());
    }

    [Theory]
    [InlineData("raw")]
    [InlineData("qed")]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void Success_replaces_the_destination_keeps_its_mode_and_leaves_no_hidden_file(string format)
    {
        Img("create", "-f", "qed", F("src.qed"), "8M");
        Io("qed", "src.qed", "write -P 0x33 1M 3M");
        File.WriteAllText(F("out.img"), "old contents");
        File.SetUnixFileMode(F("out.img"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);

        QedCli.Ok("convert", "-O", format, F("src.qed"), F("out.img"));

        AssertSameDisk("src.qed", "qed", "out.img", format);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, File.GetUnixFileMode(F("out.img")));
        Assert.Empty(HiddenFiles());
    }

    [Fact]
    public void A_symbolic_link_destination_keeps_the_link_and_replaces_the_file_it_names()
    {
        Img("create", "-f", "qed", F("src.qed"), "4M");
        Io("qed", "src.qed", "write -P 0x44 0 1M");
        Directory.CreateDirectory(F("sub"));
        File.WriteAllText(F("sub/real.raw"), "old");
        File.CreateSymbolicLink(F("link.raw"), "sub/real.raw");
        File.CreateSymbolicLink(F("dangling.raw"), "sub/new.raw");

        QedCli.Ok("convert", "-O", "raw", F("src.qed"), F("link.raw"));
        QedCli.Ok("convert", "-O", "raw", F("src.qed"), F("dangling.raw"));

        Assert.Equal("sub/real.raw", new FileInfo(F("link.raw")).LinkTarget);
        Assert.Equal("sub/new.raw", new FileInfo(F("dangling.raw")).LinkTarget);
        AssertSameDisk("src.qed", "qed", "sub/real.raw", "raw");
        AssertSameDisk("src.qed", "qed", "sub/new.raw", "raw");
        Assert.Empty(HiddenFiles());
        Assert.Empty(Directory.GetFiles(F("sub"), ".*"));
    }

    [Fact]
    public void Destinations_that_cannot_be_created_fail_with_qemu_img_wording()
    {
        Img("create", "-f", "qed", F("src.qed"), "1M");
        Directory.CreateDirectory(F("dir"));
        Assert.Equal(0, Tools.Run("mkfifo", [F("fifo")]).ExitCode);
        foreach (string target in new[] { F("no/such/dir/out.raw"), F("dir"), F("fifo"), "" })
        {
            var qemu = Tools.QemuImgRaw(_dir.Path, "convert", "-O", "raw", F("src.qed"), target);
            var ours = QedCli.Run("convert", "-O", "raw", F("src.qed"), target);
            Assert.Equal(1, qemu.ExitCode);
            Assert.Equal(1, ours.ExitCode);
            Assert.Equal(QedCli.AsQed(qemu.StdErr), ours.StdErr);
        }
        Assert.Equal("fifo", Tools.Run("stat", ["-c", "%F", F("fifo")]).StdOut.Trim());
        Assert.Empty(HiddenFiles());
    }

    [Fact]
    public void A_device_destination_is_written_in_place_and_never_deleted()
    {
        // A private character device like /dev/null (needs root); a failed convert must never delete it.
        if (Tools.Run("mknod", [F("null"), "c", "1", "3"]).ExitCode != 0)
        {
            Assert.Skip("mknod needs root");
        }
        Img("create", "-f", "qed", F("empty.qed"), "0");
        Img("create", "-f", "qed", F("src.qed"), "8M");

        QedCli.Ok("convert", "-O", "raw", F("empty.qed"), F("null"));
        var qemu = Tools.QemuImgRaw(_dir.Path, "convert", "-O", "raw", F("src.qed"), F("null"));
        var ours = QedCli.Run("convert", "-O", "raw", F("src.qed"), F("null"));
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal(QedCli.AsQed(qemu.StdErr), ours.StdErr);
        Assert.Equal($"qed: {F("null")}: error while converting raw: Cannot grow device files\n", ours.StdErr);
        // QED grows at the end of its file, which a device cannot do.
        var qed = QedCli.Run("convert", "-O", "qed", F("src.qed"), F("null"));
        Assert.Equal($"qed: {F("null")}: error while converting qed: Cannot resize device files\n", qed.StdErr);

        Assert.Equal("character special file", Tools.Run("stat", ["-c", "%F", F("null")]).StdOut.Trim());
        Assert.Empty(HiddenFiles());
    }

    /// <summary>Hidden files convert writes before renaming (<c>.NAME.qed-convert-XXXXXX</c>) left in the test directory.</summary>
    private string[] HiddenFiles() => Directory.GetFiles(_dir.Path, "*.qed-convert-*");

    private static void AssertFails(string[] args, string expectedStart)
    {
        var result = QedCli.Run(args);
        Assert.Equal(1, result.ExitCode);
        Assert.Single(QedCli.Lines(result.StdErr));
        Assert.StartsWith(expectedStart, result.StdErr, StringComparison.Ordinal);
    }

    [GeneratedRegex(@"\((\d+\.\d\d)/100%\)")]
    private static partial Regex Progress();

    [GeneratedRegex(@"""start"": (?<start>\d+), ""length"": (?<length>\d+), ""depth"": \d+, ""present"": \w+, ""zero"": \w+, ""data"": (?<data>\w+)")]
    private static partial Regex MapEntry();
}
