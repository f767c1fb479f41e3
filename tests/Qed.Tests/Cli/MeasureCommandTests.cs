using System.Text.Json;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed measure</c>: raw targets byte-equal to <c>qemu-img measure -O raw</c> run at test time (with --size, raw files
/// with holes, QED images, a chain); QED targets, which qemu-img 7.2 refuses, against the real size of a
/// <c>qed convert -O qed</c> of the same input (required) and of a copy written in full (fully allocated); the refusals
/// compared with qemu-img's.
/// </summary>
public sealed class MeasureCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Raw files with holes and odd lengths, a QED image with data and zero clusters, and a QED over QED over raw chain.</summary>
    private List<string> MakeInputs()
    {
        string holes = _dir.File("holes.raw");
        File.WriteAllBytes(holes, []);
        using (var handle = File.OpenHandle(holes, FileMode.Open, FileAccess.ReadWrite))
        {
            RandomAccess.SetLength(handle, 5 << 20);
        }
        Tools.QemuIo(_dir.Path, "raw", holes, "write -P 7 4k 4k", "write -P 8 3M 100k");

        string odd = _dir.File("odd.raw");
        File.WriteAllBytes(odd, Enumerable.Range(0, 1001).Select(i => (byte)(i % 251 + 1)).ToArray());

        string image = _dir.File("data.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", image, "20M");
        Tools.QemuIo(_dir.Path, "qed", image, "write -P 1 0 64k", "write -P 2 1M 8k", "write -z 2M 1M", "write -P 0 4M 64k", "write -P 3 17M 1k");

        string baseRaw = _dir.File("base.raw");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "raw", baseRaw, "12M");
        Tools.QemuIo(_dir.Path, "raw", baseRaw, "write -P 4 0 2M", "write -P 5 9M 4k");
        string middle = _dir.File("middle.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", "-o", "cluster_size=4k", middle, "12M");
        Tools.QemuIo(_dir.Path, "qed", middle, "write -z 0 1M", "write -P 6 6M 128k");
        string top = _dir.File("top.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-b", "middle.qed", "-F", "qed", top, "40M");
        Tools.QemuIo(_dir.Path, "qed", top, "write -P 9 33M 64k", "write -z 9M 4k");
        return [holes, odd, image, middle, top];
    }

    [Fact]
    public void Raw_target_equals_qemu_img_measure()
    {
        int compared = 0;
        var cases = new List<string[]>();
        foreach (string size in new[] { "0", "1", "1000", "1G", "1.5M", "1E" })
        {
            cases.Add(["--size", size]);
        }
        foreach (string input in MakeInputs())
        {
            cases.Add([input]);
            cases.Add(["-U", input]);
        }
        foreach (string[] input in cases)
        {
            foreach (string output in new[] { "human", "json" })
            {
                foreach (string[] target in new[] { Array.Empty<string>(), ["-O", "raw"] })
                {
                    string[] args = ["measure", $"--output={output}", .. target, .. input];
                    var qemu = Tools.QemuImg(_dir.Path, args);
                    var ours = QedCli.Ok(args);
                    Assert.True(qemu.StdOut == ours.StdOut, $"qed {string.Join(' ', args)}:\nqemu-img:\n{qemu.StdOut}\nqed:\n{ours.StdOut}");
                    compared++;
                }
            }
        }
        Assert.Equal((6 + 5 * 2) * 2 * 2, compared);
    }

    [Fact]
    public void The_largest_raw_size_measures_2_to_the_63_where_qemu_img_s_json_wraps_negative()
    {
        // 2^63 - 1 bytes round up to 2^63: qemu-img prints it unsigned in human output, but its JSON as a signed 64-bit number.
        string[] human = ["measure", "-O", "raw", "--size", "9223372036854775807"];
        Assert.Equal(Tools.QemuImg(_dir.Path, human).StdOut, QedCli.Ok(human).StdOut);
        Assert.Equal("required size: 9223372036854775808\nfully allocated size: 9223372036854775808\n", QedCli.Ok(human).StdOut);

        string[] json = ["measure", "--output=json", .. human[1..]];
        using var qemu = JsonDocument.Parse(Tools.QemuImg(_dir.Path, json).StdOut);
        Assert.Equal(long.MinValue, qemu.RootElement.GetProperty("required").GetInt64());
        using var ours = JsonDocument.Parse(QedCli.Ok(json).StdOut);
        Assert.Equal(1UL << 63, ours.RootElement.GetProperty("required").GetUInt64());
        Assert.Equal(1UL << 63, ours.RootElement.GetProperty("fully-allocated").GetUInt64());
    }

    [Fact]
    public void An_image_in_use_is_refused_as_qemu_img_refuses_it_and_measured_with_U()
    {
        string image = _dir.File("busy.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", image, "4M");
        Tools.QemuIo(_dir.Path, "qed", image, "write -P 1 0 128k");
        using var holder = Qed.Tests.Locking.BackgroundProcess.Start(_dir.Path, "qemu-io", "-c", "sleep 60000", image);
        Qed.Tests.Locking.LockTable.WaitForHolder(image, holder);

        string[] args = ["measure", "-O", "raw", image];
        var qemu = Tools.QemuImgRaw(_dir.Path, args);
        var ours = QedCli.Run(args);
        Assert.Equal((1, 1), (qemu.ExitCode, ours.ExitCode));
        Assert.Equal(QedCli.AsQed(QedCli.Lines(qemu.StdErr)[0]), QedCli.Lines(ours.StdErr)[0]);

        string[] shared = ["measure", "-U", "-O", "raw", image];
        Assert.Equal(Tools.QemuImg(_dir.Path, shared).StdOut, QedCli.Ok(shared).StdOut);
        var (required, _) = Measure(["-U", "-O", "qed", image]);
        string copy = _dir.File("busy-copy.qed");
        QedCli.Ok("convert", "-U", "-O", "qed", image, copy);
        Assert.Equal(new FileInfo(copy).Length, required);
    }

    [Fact]
    public void A_corrupt_table_is_one_line_for_a_qed_target_and_unread_for_a_raw_one()
    {
        string image = _dir.File("bad.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", image, "4M");
        Tools.QemuIo(_dir.Path, "qed", image, "write -P 1 0 64k");
        Tools.PokeU64(image, 65536, 1UL << 40); // L1 entry 0 (the L1 table is cluster 1) far past the end of the file

        // A raw target needs only the size, as in qemu-img, which does not read the tables either.
        Assert.Equal(Tools.QemuImg(_dir.Path, "measure", image).StdOut, QedCli.Ok("measure", image).StdOut);
        var ours = QedCli.Run("measure", "-O", "qed", image);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal("", ours.StdOut);
        Assert.Single(QedCli.Lines(ours.StdErr));
        Assert.Contains("L1 entry 0", ours.StdErr, StringComparison.Ordinal);
    }

    [Fact]
    public void Json_layout_is_qemu_img_s_for_a_qcow2_target_too()
    {
        // qemu-img writes the keys in this order for every format it measures; qcow2's figures differ from raw's.
        var qemu = Tools.QemuImg(_dir.Path, "measure", "--output=json", "-O", "qcow2", "--size", "1G");
        var ours = QedCli.Ok("measure", "--output=json", "-O", "qed", "--size", "1G");
        string Shape(string text) => System.Text.RegularExpressions.Regex.Replace(text, "[0-9]+", "N");
        Assert.Equal(Shape(qemu.StdOut), Shape(ours.StdOut));
    }

    public static TheoryData<string[]> QedOptionSets => new()
    {
        Array.Empty<string>(),
        new[] { "-o", "cluster_size=4k" },
        new[] { "-o", "cluster_size=4k,table_size=2" },
        new[] { "-o", "table_size=16" },
        new[] { "-o", "cluster_size=1M,table_size=2" },
    };

    [Theory]
    [MemberData(nameof(QedOptionSets))]
    public void Qed_target_required_equals_the_size_qed_convert_writes(string[] options)
    {
        var inputs = MakeInputs();
        int measured = 0;
        foreach (string input in inputs)
        {
            // qemu-img 7.2 has no QED measurement at all.
            var qemu = Tools.QemuImgRaw(_dir.Path, ["measure", "-O", "qed", .. options, input]);
            Assert.Equal(1, qemu.ExitCode);
            Assert.Contains("Block driver 'qed' does not support size measurement", qemu.StdErr, StringComparison.Ordinal);

            var (required, fullyAllocated) = Measure(["-O", "qed", .. options, input]);
            string copy = _dir.File($"copy-{measured}.qed");
            QedCli.Ok(["convert", "-O", "qed", .. options, input, copy]);
            Assert.True(new FileInfo(copy).Length == required, $"{input} {string.Join(' ', options)}: measured {required}, convert wrote {new FileInfo(copy).Length}");

            // Writing every cluster of the copy reaches the fully allocated size.
            long size = JsonDocument.Parse(Tools.QemuImg(_dir.Path, "info", "--output=json", copy).StdOut).RootElement.GetProperty("virtual-size").GetInt64();
            Tools.QemuIo(_dir.Path, "qed", copy, $"write -P 85 0 {size}");
            Assert.True(new FileInfo(copy).Length == fullyAllocated, $"{input} {string.Join(' ', options)}: measured {fullyAllocated} fully allocated, the written copy has {new FileInfo(copy).Length}");
            measured++;
        }
        Assert.Equal(inputs.Count, measured);
    }

    [Theory]
    [MemberData(nameof(QedOptionSets))]
    public void Qed_target_of_a_blank_disk_equals_a_created_image_and_a_full_one(string[] options)
    {
        int measured = 0;
        foreach (string size in new[] { "0", "512", "1000", "3M", "7M" })
        {
            var (required, fullyAllocated) = Measure(["-O", "qed", .. options, "--size", size]);
            string image = _dir.File($"blank-{measured}.qed");
            Tools.QemuImg(_dir.Path, ["create", "-q", "-f", "qed", .. options, image, size]);
            Assert.Equal(new FileInfo(image).Length, required);
            long virtualSize = JsonDocument.Parse(Tools.QemuImg(_dir.Path, "info", "--output=json", image).StdOut).RootElement.GetProperty("virtual-size").GetInt64();
            if (virtualSize > 0)
            {
                Tools.QemuIo(_dir.Path, "qed", image, $"write -P 1 0 {virtualSize}");
            }
            Assert.Equal(new FileInfo(image).Length, fullyAllocated);
            measured++;
        }
        Assert.Equal(5, measured);
    }

    [Fact]
    public void Size_option_in_o_is_replaced_by_size_as_in_qemu_img()
    {
        var qemu = Tools.QemuImg(_dir.Path, "measure", "-O", "raw", "-o", "size=2G", "--size", "1G");
        Assert.Equal(qemu.StdOut, QedCli.Ok("measure", "-O", "raw", "-o", "size=2G", "--size", "1G").StdOut);
        Assert.Equal(Measure(["-O", "qed", "--size", "1G"]), Measure(["-O", "qed", "-o", "size=2G", "--size", "1G"]));
    }

    [Fact]
    public void O_help_lists_the_options_as_create_does_where_qemu_img_refuses()
    {
        foreach (string format in new[] { "qed", "raw" })
        {
            var qemu = Tools.QemuImgRaw(_dir.Path, "measure", "-O", format, "-o", "help", "--size", "1G");
            Assert.Equal(1, qemu.ExitCode);
            Assert.StartsWith("qemu-img: Invalid parameter 'help'", qemu.StdErr, StringComparison.Ordinal);
            var create = Tools.QemuImg(_dir.Path, "create", "-f", format, "-o", "help");
            Assert.Equal(QedCli.Ok("create", "-f", format, "-o", "help").StdOut, QedCli.Ok("measure", "-O", format, "-o", "help").StdOut);
            Assert.Contains("size=<size>", create.StdOut, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("--size", "1G", "@/a.qed")]
    [InlineData()]
    [InlineData("-f", "raw", "--size", "1G")]
    [InlineData("--size", "1x")]
    [InlineData("--size", "-1")]
    [InlineData("--size", "1G", "-O", "foo")]
    [InlineData("--size", "1G", "-O", "raw", "-o", "cluster_size=4k")]
    [InlineData("--size", "1G", "-O", "raw", "-o", "size=x")]
    [InlineData("--size", "1G", "--output=xml")]
    [InlineData("@/a.qed", "@/a.qed")]
    [InlineData("@/missing.qed")]
    [InlineData("-O", "foo", "@/a.qed")]
    public void Refusals_are_qemu_img_s(params string[] template)
    {
        string image = _dir.File("a.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", image, "1M");
        string[] args = ["measure", .. template.Select(a => a.Replace("@", _dir.Path, StringComparison.Ordinal))];

        var qemu = Tools.QemuImgRaw(_dir.Path, args);
        var ours = QedCli.Run(args);
        Assert.Equal(1, qemu.ExitCode);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal("", ours.StdOut);
        Assert.Single(QedCli.Lines(ours.StdErr));
        // qemu-img words some refusals over two or three lines where qed prints one, and names a missing file twice.
        string qemuJoined = string.Join(" ", QedCli.Lines(qemu.StdErr).Select(QedCli.AsQed)).Replace(" qed: ", " ", StringComparison.Ordinal);
        qemuJoined = System.Text.RegularExpressions.Regex.Replace(qemuJoined, "(Could not open '[^']*': )\\1", "$1");
        Assert.StartsWith(QedCli.Lines(ours.StdErr)[0], qemuJoined, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-O", "qed", "-o", "cluster_size=1000", "--size", "1M", "QED cluster size must be within range")]
    [InlineData("-O", "qed", "-o", "table_size=3", "--size", "1M", "QED table size must be within range")]
    [InlineData("-O", "qed", "-o", "cluster_size=4k,table_size=1", "--size", "1T", "QED image size must be")]
    [InlineData("-O", "qed", "-o", "bogus=1", "--size", "1M", "Invalid parameter 'bogus'")]
    public void Qed_target_refuses_what_create_refuses(params string[] template)
    {
        string[] args = ["measure", .. template[..^1]];
        var ours = QedCli.Run(args);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal("", ours.StdOut);
        Assert.Contains(template[^1], ours.StdErr, StringComparison.Ordinal);
        Assert.Single(QedCli.Lines(ours.StdErr));
    }

    private static (long Required, long FullyAllocated) Measure(string[] args)
    {
        using var json = JsonDocument.Parse(QedCli.Ok(["measure", "--output=json", .. args]).StdOut);
        var human = QedCli.Lines(QedCli.Ok(["measure", .. args]).StdOut);
        var result = (json.RootElement.GetProperty("required").GetInt64(), json.RootElement.GetProperty("fully-allocated").GetInt64());
        Assert.Equal([$"required size: {result.Item1}", $"fully allocated size: {result.Item2}"], human);
        return result;
    }
}
