using System.Globalization;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;
using Qed.Tests.Locking;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed resize</c> against <c>qemu-img resize</c> run at test time on copies of the same images: exit status, output,
/// every refusal line and the resulting file byte for byte (QED grown, raw files both ways with unaligned sizes, relative
/// sizes, suffixes, bad sizes, misplaced arguments, preallocation modes); and side by side where qemu-img refuses and we
/// do not: an overlay grown over a longer backing file, and a QED image shrunk.
/// </summary>
public sealed class ResizeCommandTests : IDisposable
{
    private const long MiB = 1 << 20;
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Command lines for a 1 MiB QED image full of data; FILE stands for the image.</summary>
    private static readonly string[][] s_qedCases =
    [
        // Accepted: absolute and relative sizes, suffixes, hex, white space, options after the file name, "--".
        ["FILE", "2M"], ["FILE", "+1M"], ["FILE", "+1.5M"], ["FILE", "1049088"], ["FILE", "0x300000"], ["FILE", " 3M"],
        ["FILE", "++1M"], ["FILE", "+ 1M"], ["FILE", "2m"], ["FILE", "64T"], ["FILE", "+0"], ["-q", "FILE", "+1M"],
        ["FILE", "-q", "+1M"], ["--preallocation=off", "FILE", "+1M"], ["-f", "qed", "FILE", "2M"], ["-fqed", "FILE", "2M"],
        ["--", "FILE", "2M"], ["FILE", "--", "2M"], ["-f", "raw", "FILE", "+0"],
        // Sizes qemu-img cannot parse, or that end up not positive.
        ["FILE", "1x"], ["FILE", ""], ["FILE", "1.5"], ["FILE", "1e3"], ["FILE", "1KiB"], ["FILE", "+"], ["FILE", "-"],
        ["FILE", "+-1M"], ["FILE", " -1M"], ["FILE", "9999999999999999999999"], ["FILE", "16E"], ["FILE", "+16E"],
        ["FILE", "9E"], ["FILE", "+9E"], ["FILE", "0"], ["FILE", "-1M"], ["FILE", "-5G"], ["--shrink", "FILE", "--", "-1M"],
        // Shrinking without --shrink, sizes QED cannot hold.
        ["FILE", "1000"], ["FILE", "-512K"], ["FILE", "1000k"], ["FILE", "3146241"], ["FILE", "65T"], ["FILE", "+64T"],
        // Misplaced or missing arguments.
        ["FILE"], [], ["FILE", "1M", "2M"], ["-q", "1M"], ["--shrink", "FILE"], ["FILE", "--shrink"], ["FILE", "-f"],
        ["-U", "FILE", "2M"], ["--bogus", "FILE", "2M"],
        // Preallocation.
        ["--preallocation=full", "FILE", "+1M"], ["--preallocation=metadata", "FILE", "+1M"], ["--preallocation=falloc", "FILE", "+1M"],
        ["--preallocation=bogus", "FILE", "+1M"], ["--shrink", "--preallocation=full", "FILE", "512K"],
    ];

    /// <summary>Command lines for a raw file of 1,000,000 bytes (not a whole number of sectors).</summary>
    private static readonly string[][] s_rawCases =
    [
        ["FILE", "+1"], ["FILE", "+0.5k"], ["FILE", "2000000"], ["FILE", "3M"], ["FILE", "1000001"], ["FILE", "-1000"],
        ["--shrink", "FILE", "999"], ["--shrink", "FILE", "-1000"], ["--shrink", "FILE", "--", "-1000"], ["--shrink", "FILE", "1"],
        ["--shrink", "FILE", "-1M"], ["--preallocation=metadata", "FILE", "+1M"], ["--preallocation=falloc", "FILE", "+1M"],
        ["--preallocation=full", "FILE", "+1M"], ["--shrink", "--preallocation=falloc", "FILE", "1"],
    ];

    [Fact]
    public void Qed_images_answer_as_qemu_img_resize()
    {
        string original = _dir.File("orig.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", original, "1M");
        Tools.QemuIo(_dir.Path, "qed", original, "write -P 7 0 1M");
        int compared = CompareAll(original, "qed", s_qedCases);
        Assert.Equal(s_qedCases.Length, compared);
    }

    [Fact]
    public void Raw_files_answer_as_qemu_img_resize_both_ways_with_unaligned_sizes_kept()
    {
        string original = _dir.File("orig.raw");
        var random = new Random(TestSeed.For(nameof(Raw_files_answer_as_qemu_img_resize_both_ways_with_unaligned_sizes_kept)));
        File.WriteAllBytes(original, Img.RandomBytes(random, 1_000_000));
        // -f raw: without it qemu-img prints its probing warning, which qed does not.
        int compared = CompareAll(original, "raw", s_rawCases.Select(c => (string[])["-f", "raw", .. c]).ToArray());
        Assert.Equal(s_rawCases.Length, compared);
    }

    /// <summary>
    /// Runs each command line with qemu-img on one copy of <paramref name="original"/> and with qed on another: same exit
    /// status, output and error lines, and the same file afterwards (unchanged when refused). Returns the cases run.
    /// </summary>
    private int CompareAll(string original, string extension, string[][] cases)
    {
        Directory.CreateDirectory(_dir.File("q"));
        Directory.CreateDirectory(_dir.File("o"));
        string qemuFile = _dir.File("q/img." + extension);
        string ourFile = _dir.File("o/img." + extension);
        int compared = 0, succeeded = 0;
        foreach (string[] command in cases)
        {
            File.Copy(original, qemuFile, overwrite: true);
            File.Copy(original, ourFile, overwrite: true);
            var qemu = Tools.QemuImgRaw(_dir.Path, ["resize", .. command.Select(a => a == "FILE" ? qemuFile : a)]);
            var ours = QedCli.Run(["resize", .. command.Select(a => a == "FILE" ? ourFile : a)]);
            string what = $"resize {string.Join(' ', command.Select(a => $"'{a}'"))}\nqed: {ours}\nqemu-img: {qemu}";
            Assert.True(qemu.ExitCode == ours.ExitCode, what);
            Assert.True(qemu.StdOut == ours.StdOut, what);
            Assert.True(QedCli.AsQed(qemu.StdErr).Replace(qemuFile, ourFile, StringComparison.Ordinal) == ours.StdErr, what);
            Assert.True(new FileInfo(qemuFile).Length == new FileInfo(ourFile).Length, what);
            Assert.True(Tools.Sha256OfFile(qemuFile) == Tools.Sha256OfFile(ourFile), $"the files differ\n{what}");
            if (ours.ExitCode != 0)
            {
                Assert.True(Tools.Sha256OfFile(original) == Tools.Sha256OfFile(ourFile), $"a refused resize changed the file\n{what}");
            }
            else
            {
                succeeded++;
            }
            compared++;
        }
        TestSeed.Report($"{compared} resize command lines on a {extension} image compared with qemu-img resize, {succeeded} resized");
        return compared;
    }

    [Fact]
    public void The_fixtures_grow_as_qemu_img_grows_them_and_shrink_where_it_refuses()
    {
        // QED-FORMAT.md §13, made by QEMU: geometries, backing chains of raw and QED layers, zero clusters, a short backing
        // file. (F06's one-cluster tables are left out: QEMU cannot open them.)
        Func<ImageWriter, string, string>[] fixtures =
        [
            Fixtures.F01, Fixtures.F02, Fixtures.F03, Fixtures.F04, Fixtures.F05, Fixtures.F07, Fixtures.F08, Fixtures.F09,
            Fixtures.F10, Fixtures.F11, Fixtures.F12, Fixtures.F24, Fixtures.F28,
        ];
        string[][] grows = [["+1M"], ["+512"], ["-q", "+64k"]];
        int grown = 0, shrunk = 0;
        foreach (var make in fixtures)
        {
            string name = make(ImageWriter.Qemu, _dir.Path);
            string original = _dir.File(name);
            string qemuFile = _dir.File("q-" + name), ourFile = _dir.File("o-" + name);
            foreach (string[] grow in grows)
            {
                File.Copy(original, qemuFile, overwrite: true);
                File.Copy(original, ourFile, overwrite: true);
                var qemu = Tools.QemuImgRaw(_dir.Path, ["resize", "-f", "qed", .. grow[..^1], qemuFile, grow[^1]]);
                var ours = QedCli.Run(["resize", "-f", "qed", .. grow[..^1], ourFile, grow[^1]]);
                string what = $"{name} {string.Join(' ', grow)}\nqed: {ours}\nqemu-img: {qemu}";
                Assert.True(qemu.ExitCode == 0 && ours.ExitCode == 0 && qemu.StdOut == ours.StdOut && ours.StdErr.Length == 0, what);
                Assert.True(Tools.Sha256OfFile(qemuFile) == Tools.Sha256OfFile(ourFile), $"the files differ\n{what}");
                grown++;
            }

            // Half the size, rounded to a sector: qemu-img refuses, we keep what lies below.
            long size = InfoSize(original);
            long half = size / 2 / 512 * 512;
            File.Copy(original, qemuFile, overwrite: true);
            File.Copy(original, ourFile, overwrite: true);
            var refused = Tools.QemuImgRaw(_dir.Path, "resize", "--shrink", "-f", "qed", qemuFile, $"{half}");
            Assert.True(refused.ExitCode == 1 && refused.StdErr == "qemu-img: Shrinking images is currently not supported\n", $"{name}: {refused}");
            var done = QedCli.Run("resize", "--shrink", "-q", "-f", "qed", ourFile, $"{half}");
            Assert.True(done.ExitCode == 0 && done.StdOut.Length == 0, $"{name}: {done}");
            var check = QemuOracle.Check(_dir.Path, ourFile);
            Assert.True(check.NoCorruption, $"{name}: {check}");
            // The warning counts what our checker counts, which is qemu-img check's count but for QEMU's spurious leaks in
            // files of cluster_size - 1 clusters or more (§8.4, F28).
            QemuOracle.AssertOurCheckAgrees(_dir.Path, ourFile, check);
            long ourLeaks;
            using (var device = InteropAssert.OpenReadOnly(ourFile))
            {
                ourLeaks = device.Check().Leaks;
            }
            Assert.True((ourLeaks == 0 ? "" : $"qed: warning: {ourLeaks} leaked clusters") == done.StdErr.Split(" (")[0].TrimEnd('\n'), $"{name}: {done}\n{check}");
            string flat = QemuOracle.Flatten(_dir.Path, original);
            string expected = _dir.File("expected.raw");
            File.WriteAllBytes(expected, File.ReadAllBytes(flat)[..(int)half]);
            QemuOracle.AssertIdentical(_dir.Path, ourFile, expected, "qed", "raw");
            File.Delete(flat);
            shrunk++;
        }
        TestSeed.Report($"{fixtures.Length} fixtures: {grown} grows byte-equal to qemu-img resize's, {shrunk} shrinks where qemu-img refuses");
        Assert.Equal(fixtures.Length * grows.Length, grown);
        Assert.Equal(fixtures.Length, shrunk);
    }

    /// <summary>The virtual size qemu-img info reports.</summary>
    private long InfoSize(string path)
    {
        var info = Tools.QemuImg(_dir.Path, "info", "-f", "qed", "--output=json", path);
        using var json = System.Text.Json.JsonDocument.Parse(info.StdOut);
        return json.RootElement.GetProperty("virtual-size").GetInt64();
    }

    [Fact]
    public void A_missing_file_or_unknown_format_fails_as_in_qemu_img()
    {
        string image = _dir.File("a.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", image, "1M");
        string[][] cases = [[_dir.File("missing.qed"), "2M"], ["-f", "bogus", image, "2M"]];
        foreach (string[] command in cases)
        {
            var qemu = Tools.QemuImgRaw(_dir.Path, ["resize", .. command]);
            var ours = QedCli.Run(["resize", .. command]);
            Assert.True(qemu.ExitCode == 1 && ours.ExitCode == 1, $"{ours}\n{qemu}");
            // The reasons are worded by the open (the same as every other qed command), the prefix is qemu-img's.
            string prefix = $"Could not open '{command[^2]}': ";
            Assert.StartsWith("qemu-img: " + prefix, qemu.StdErr, StringComparison.Ordinal);
            Assert.StartsWith("qed: " + prefix, ours.StdErr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void An_overlay_grows_over_a_longer_backing_file_and_the_new_area_reads_as_zeros_where_qemu_img_refuses()
    {
        // A 4 MiB raw base full of 9s under a 1000 KiB overlay (a partial last cluster) with 64 KiB of its own data.
        string baseRaw = _dir.File("base.raw");
        File.WriteAllBytes(baseRaw, Enumerable.Repeat((byte)9, (int)(4 * MiB)).ToArray());
        string overlay = _dir.File("o.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", overlay, "1000k");
        Tools.QemuIo(_dir.Path, "qed", overlay, "write -P 5 0 64k");
        string copy = _dir.File("q.qed");
        File.Copy(overlay, copy);

        var qemu = Tools.QemuImgRaw(_dir.Path, "resize", "-f", "qed", copy, "3M");
        Assert.True(qemu.ExitCode == 1 && qemu.StdErr == "qemu-img: Block driver does not support requested flags\n", qemu.ToString());

        var ours = QedCli.Run("resize", "-f", "qed", overlay, "3M");
        Assert.True(ours.ExitCode == 0 && ours.StdOut == "Image resized.\n" && ours.StdErr.Length == 0, ours.ToString());
        byte[] expected = new byte[3 * MiB];
        Array.Fill(expected, (byte)5, 0, 64 * 1024);
        Array.Fill(expected, (byte)9, 64 * 1024, 1000 * 1024 - 64 * 1024);
        string expectedRaw = _dir.File("expected.raw");
        File.WriteAllBytes(expectedRaw, expected);
        QemuOracle.AssertIdentical(_dir.Path, overlay, expectedRaw, "qed", "raw");
        QemuOracle.AssertClean(_dir.Path, overlay);

        // Past the backing file's end nothing needed zeroing: growing further writes no table.
        long length = Img.FileLength(overlay);
        QedCli.Ok("resize", "-q", overlay, "1G");
        Assert.Equal(length, Img.FileLength(overlay));
        QemuOracle.AssertClean(_dir.Path, overlay);
    }

    [Fact]
    public void An_overlay_at_the_top_of_a_chain_grows_to_zeros_whatever_the_layers_below_hold()
    {
        // raw base (9s) <- mid.qed (its own 6s at 2M) <- top.qed (1M, 5s at 0), each layer with its own geometry.
        File.WriteAllBytes(_dir.File("base.raw"), Enumerable.Repeat((byte)9, (int)(4 * MiB)).ToArray());
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=16384", "-b", "base.raw", "-F", "raw", _dir.File("mid.qed"), "4M");
        Tools.QemuIo(_dir.Path, "qed", _dir.File("mid.qed"), "write -P 6 2M 64k");
        string top = _dir.File("top.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", "-b", "mid.qed", "-F", "qed", top, "1M");
        Tools.QemuIo(_dir.Path, "qed", top, "write -P 5 0 4k");
        string copy = _dir.File("copy.qed");
        File.Copy(top, copy);

        var qemu = Tools.QemuImgRaw(_dir.Path, "resize", copy, "+3M");
        Assert.True(qemu.ExitCode == 1 && qemu.StdErr == "qemu-img: Block driver does not support requested flags\n", qemu.ToString());
        var ours = QedCli.Run("resize", top, "+3M");
        Assert.True(ours.ExitCode == 0 && ours.StdOut == "Image resized.\n", ours.ToString());

        Tools.QemuIo(_dir.Path, "qed", top, "read -P 5 0 4k", $"read -P 9 4k {MiB - 4096}", $"read -P 0 {MiB} {3 * MiB}");
        QemuOracle.AssertClean(_dir.Path, top);
    }

    [Fact]
    public void Shrink_keeps_the_data_below_the_new_end_and_reports_the_leaks_qemu_img_check_finds_where_qemu_img_refuses()
    {
        // 4 KiB clusters, two-cluster tables: data for 0..3M, its table, data for 5M..6M and its table.
        string image = _dir.File("s.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", image, "8M");
        Tools.QemuIo(_dir.Path, "qed", image, "write -P 1 0 3M", "write -P 2 5M 1M");
        string flat = QemuOracle.Flatten(_dir.Path, image);
        string copy = _dir.File("q.qed");
        File.Copy(image, copy);
        long before = Img.FileLength(image);

        var qemuNoFlag = Tools.QemuImgRaw(_dir.Path, "resize", "-f", "qed", copy, "-6M");
        var oursNoFlag = QedCli.Run("resize", "-f", "qed", image, "-6M");
        Assert.True(qemuNoFlag.ExitCode == 1 && oursNoFlag.ExitCode == 1 && QedCli.AsQed(qemuNoFlag.StdErr) == oursNoFlag.StdErr, $"{oursNoFlag}\n{qemuNoFlag}");
        var qemu = Tools.QemuImgRaw(_dir.Path, "resize", "--shrink", "-f", "qed", copy, "-6M");
        Assert.True(qemu.ExitCode == 1 && qemu.StdErr == "qemu-img: Shrinking images is currently not supported\n", qemu.ToString());

        // 8M - 6M = 2M: the second table and its data are cut off; the first megabyte of 0..3M's data stays leaked.
        var ours = QedCli.Run("resize", "--shrink", "-f", "qed", image, "-6M");
        var check = QemuOracle.Check(_dir.Path, image);
        Assert.True(check.ExitCode == 3 && check.Corruptions == 0 && check.Leaks == 256, check.ToString());
        Assert.True(ours.ExitCode == 0 && ours.StdOut == "Image resized.\n", ours.ToString());
        Assert.Equal($"qed: warning: {check.Leaks} leaked clusters ({check.Leaks * 4096} bytes) stay in the middle of the file: QED cannot reuse them, " +
            "and qemu-img check reports them as leaks, which harm no data\n", ours.StdErr);
        Assert.True(Img.FileLength(image) < before - MiB);

        // What remains reads as the first 2 MiB of the original.
        string expected = _dir.File("expected.raw");
        using (var source = File.OpenRead(flat))
        using (var target = File.Create(expected))
        {
            byte[] head = new byte[2 * MiB];
            source.ReadExactly(head);
            target.Write(head);
        }
        QemuOracle.AssertIdentical(_dir.Path, image, expected, "qed", "raw");

        // Quiet: no output, the warning aside (it counts every leak in the file: 256 before, 128 more now).
        var quiet = QedCli.Run("resize", "-q", "--shrink", image, "1536k");
        Assert.True(quiet.ExitCode == 0 && quiet.StdOut.Length == 0 && quiet.StdErr.StartsWith("qed: warning: 384 leaked clusters", StringComparison.Ordinal), quiet.ToString());
        Tools.QemuIo(_dir.Path, "qed", image, "read -P 1 0 1536k");
        Assert.True(QemuOracle.Check(_dir.Path, image).NoCorruption);
    }

    [Fact]
    public void An_image_in_use_is_refused_as_qemu_img_refuses_it_and_left_unchanged()
    {
        string image = _dir.File("busy.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", image, "1M");
        string before = Tools.Sha256OfFile(image);
        using (var nbd = BackgroundProcess.Start(_dir.Path, "qemu-nbd", "-f", "qed", "-k", _dir.File("nbd.sock"), image))
        {
            LockTable.WaitForHolder(image, nbd);
            foreach (string[] command in new[] { new[] { image, "2M" }, ["--shrink", image, "512K"] })
            {
                var qemu = Tools.QemuImgRaw(_dir.Path, ["resize", "-f", "qed", .. command]);
                var ours = QedCli.Run(["resize", "-f", "qed", .. command]);
                string what = $"{ours}\n{qemu}";
                Assert.True(qemu.ExitCode == 1 && ours.ExitCode == 1, what);
                Assert.True(QedCli.AsQed(qemu.StdErr) == ours.StdErr, what);
                Assert.Contains("Is another process using the image", ours.StdErr, StringComparison.Ordinal);
                Assert.Equal(before, Tools.Sha256OfFile(image));
            }
            Assert.False(nbd.HasExited, nbd.Output);
        }
    }

    [Fact]
    public void Preallocation_of_a_raw_file_allocates_the_new_space()
    {
        string image = _dir.File("p.raw");
        File.WriteAllBytes(image, []);
        QedCli.Ok("resize", "-f", "raw", "--preallocation=falloc", image, "4M");
        Assert.Equal(4 * MiB, Img.FileLength(image));
        Assert.True(Device.Dev.AllocatedBlocks(image) * 512 >= 4 * MiB, string.Create(CultureInfo.InvariantCulture, $"{Device.Dev.AllocatedBlocks(image)} blocks"));
        Tools.QemuIo(_dir.Path, "raw", image, "read -P 0 0 4M");
    }
}
