using System.Text.Json;
using System.Text.RegularExpressions;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed convert -O qcow2</c> and <c>qed create -f qcow2</c> against qemu-img: the output checks clean (no corruption, no
/// leak), compares equal to the source, holds data exactly where the source has non-zero bytes, and carries the header
/// fields qemu-img's own output for the same options carries; option mistakes get qemu-img's messages.
/// </summary>
public partial class ConvertQcow2Tests : IDisposable
{
    private const int MiB = 1024 * 1024;
    // The zero-detection unit of convert without -S.
    private const int SparseGranule = 4096;
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string F(string name) => _dir.File(name);

    /// <summary>Option sets for a standalone output: -o value (or empty) and whether to compress.</summary>
    public static TheoryData<string, bool> StandaloneOptions => new()
    {
        { "", false },
        { "compat=0.10", false },
        { "compat=v3,lazy_refcounts=on", false },
        { "cluster_size=512", false },
        { "cluster_size=4k", false },
        { "cluster_size=2M", false },
        { "refcount_bits=1", false },
        { "refcount_bits=2", false },
        { "refcount_bits=4", false },
        { "refcount_bits=8", false },
        { "refcount_bits=32", false },
        { "refcount_bits=64", false },
        { "extended_l2=on", false },
        { "extended_l2=on,cluster_size=16k", false },
        { "extended_l2=on,cluster_size=2M,refcount_bits=1", false },
        { "compression_type=zstd", false },
        { "", true },
        { "compat=0.10", true },
        { "cluster_size=512", true },
        { "cluster_size=4k", true },
        { "cluster_size=2M", true },
        { "refcount_bits=1", true },
        { "refcount_bits=2,cluster_size=4k", true },
        { "extended_l2=on", true },
        { "compression_type=zstd", true },
        { "compression_type=zstd,cluster_size=4k", true },
    };

    [Theory]
    [MemberData(nameof(StandaloneOptions))]
    public void Output_checks_clean_compares_equal_and_holds_data_only_where_the_source_has_it(string options, bool compress)
    {
        var random = new Random(TestSeed.For($"{nameof(Output_checks_clean_compares_equal_and_holds_data_only_where_the_source_has_it)}({options},{compress})"));
        byte[] disk = BuildSource(random, F("src.raw"));
        string[] extra = options.Length > 0 ? ["-o", options] : [];

        var result = QedCli.Run(["convert", "-O", "qcow2", .. compress ? ["-c"] : Array.Empty<string>(), .. extra, F("src.raw"), F("out.qcow2")]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal("", result.StdOut + result.StdErr);
        var check = AssertChecksClean("out.qcow2");
        AssertSameDisk("src.raw", "raw", "out.qcow2");
        // The same header fields as qemu-img's own output for the same options.
        Tools.QemuImg(_dir.Path, ["convert", "-O", "qcow2", .. compress ? ["-c"] : Array.Empty<string>(), .. extra, F("src.raw"), F("theirs.qcow2")]);
        Assert.Equal(InfoFields("theirs.qcow2"), InfoFields("out.qcow2"));

        var info = Info("out.qcow2");
        long clusterSize = info.GetProperty("cluster-size").GetInt64();
        bool extended = info.GetProperty("format-specific").GetProperty("data").TryGetProperty("extended-l2", out var e) && e.GetBoolean();
        long unit = extended && !compress ? clusterSize / 32 : clusterSize;
        Assert.Equal(NonZeroUnits(disk, unit, compress ? unit : SparseGranule), MappedUnits("out.qcow2", unit, depth: 0, includeZero: false));
        // qemu-img allocates exactly the same units.
        Assert.Equal(MappedUnits("theirs.qcow2", unit, depth: 0, includeZero: false), MappedUnits("out.qcow2", unit, depth: 0, includeZero: false));
        if (compress)
        {
            // The source has compressible clusters (text, patterns): at least one is stored compressed, as qemu-img stores it.
            Assert.True(Check("theirs.qcow2").GetProperty("compressed-clusters").GetInt64() > 0);
            Assert.True(check.TryGetProperty("compressed-clusters", out var compressed) && compressed.GetInt64() > 0, check.ToString());
        }
        TestSeed.Report($"{options} {(compress ? "-c" : "")}: qed {new FileInfo(F("out.qcow2")).Length} bytes, qemu-img {new FileInfo(F("theirs.qcow2")).Length} bytes");
    }

    public static TheoryData<string, bool> OverlayOptions => new()
    {
        { "", false },
        { "compat=0.10", false },
        { "cluster_size=4k", false },
        { "extended_l2=on", false },
        { "refcount_bits=1", false },
        { "", true },
        { "extended_l2=on", true },
    };

    /// <summary>With <c>-B</c> the output holds only the units where the source differs from the backing file; zeros over backing data become zero clusters (version 3) or written zeros (version 2).</summary>
    [Theory]
    [MemberData(nameof(OverlayOptions))]
    public void Overlay_holds_only_what_differs_from_its_backing_file(string options, bool compress)
    {
        var random = new Random(TestSeed.For($"{nameof(Overlay_holds_only_what_differs_from_its_backing_file)}({options},{compress})"));
        byte[] baseDisk = BuildSource(random, F("base.raw"));
        byte[] disk = (byte[])baseDisk.Clone();
        Mutate(random, disk);
        File.WriteAllBytes(F("src.raw"), disk);
        string[] extra = options.Length > 0 ? ["-o", options] : [];

        var result = QedCli.Run(["convert", "-O", "qcow2", .. compress ? ["-c"] : Array.Empty<string>(), .. extra, "-B", "base.raw", "-F", "raw",
            F("src.raw"), F("out.qcow2")]);

        Assert.True(result.ExitCode == 0, result.ToString());
        AssertChecksClean("out.qcow2");
        AssertSameDisk("src.raw", "raw", "out.qcow2");
        var info = Info("out.qcow2");
        Assert.Equal("base.raw", info.GetProperty("backing-filename").GetString());
        Assert.Equal("raw", info.GetProperty("backing-filename-format").GetString());
        long clusterSize = info.GetProperty("cluster-size").GetInt64();
        bool extended = options.Contains("extended_l2=on", StringComparison.Ordinal);
        long unit = extended && !compress ? clusterSize / 32 : clusterSize;
        var differing = new SortedSet<long>();
        long granule = compress ? unit : Math.Max(SparseGranule, unit);
        for (long g = 0; g * granule < disk.Length; g++)
        {
            int start = (int)(g * granule), length = (int)Math.Min(granule, disk.Length - start);
            if (!disk.AsSpan(start, length).SequenceEqual(baseDisk.AsSpan(start, length)))
            {
                differing.UnionWith(UnitsOf(g, granule, unit, disk.Length));
            }
        }
        Assert.Equal(differing, MappedUnits("out.qcow2", unit, depth: 0, includeZero: true));
    }

    [Fact]
    public void Qed_source_with_a_backing_chain_converts_to_one_qcow2_image()
    {
        Tools.QemuImg(_dir.Path, "create", "-f", "qed", F("base.qed"), "16M");
        Tools.QemuIo(_dir.Path, "qed", F("base.qed"), "write -P 0x11 0 4M", "write -P 0x12 10M 1M");
        Tools.QemuImg(_dir.Path, "create", "-f", "qed", "-b", "base.qed", "-F", "qed", F("top.qed"));
        Tools.QemuIo(_dir.Path, "qed", F("top.qed"), "write -P 0x21 1M 64k", "write -z 2M 1M", "write -P 0x22 15M 3k");

        QedCli.Ok("convert", "-O", "qcow2", F("top.qed"), F("out.qcow2"));

        AssertChecksClean("out.qcow2");
        AssertSameDisk("top.qed", "qed", "out.qcow2");
        Assert.False(Info("out.qcow2").TryGetProperty("backing-filename", out _));
    }

    /// <summary>A source whose size is not a multiple of the cluster size (nor of 512): the last cluster is partial, and the disk is rounded up to 512 bytes as qemu-img rounds it.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Odd_sized_source_rounds_to_512_bytes(bool compress)
    {
        byte[] disk = new byte[3 * MiB + 1000];
        new Random(7).NextBytes(disk.AsSpan(3 * MiB - 100));
        File.WriteAllBytes(F("src.raw"), disk);

        QedCli.Ok(["convert", "-O", "qcow2", .. compress ? ["-c"] : Array.Empty<string>(), F("src.raw"), F("out.qcow2")]);

        AssertChecksClean("out.qcow2");
        AssertSameDisk("src.raw", "raw", "out.qcow2");
        Assert.Equal(3L * MiB + 1024, Info("out.qcow2").GetProperty("virtual-size").GetInt64());
    }

    /// <summary><c>-S 0</c> writes every byte, zeros included: the output is fully allocated (qemu-img's meaning), yet clean and equal.</summary>
    [Fact]
    public void Sparse_size_0_allocates_everything()
    {
        byte[] disk = new byte[2 * MiB + 512];
        disk[100] = 1;
        File.WriteAllBytes(F("src.raw"), disk);

        QedCli.Ok("convert", "-O", "qcow2", "-S", "0", "-o", "cluster_size=4k", F("src.raw"), F("out.qcow2"));

        AssertChecksClean("out.qcow2");
        AssertSameDisk("src.raw", "raw", "out.qcow2");
        Assert.Equal(Enumerable.Range(0, 513).Select(i => (long)i).ToHashSet(), MappedUnits("out.qcow2", 4096, depth: 0, includeZero: false).ToHashSet());
    }

    /// <summary><c>-W</c> with several writers: the clusters land in any order, the image is still clean and equal.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Out_of_order_writers_give_a_clean_image(bool compress)
    {
        var random = new Random(TestSeed.For($"{nameof(Out_of_order_writers_give_a_clean_image)}({compress})"));
        byte[] disk = BuildSource(random, F("src.raw"));

        QedCli.Ok(["convert", "-O", "qcow2", "-W", "-m", "16", .. compress ? ["-c"] : Array.Empty<string>(), "-o", "cluster_size=4k", F("src.raw"), F("out.qcow2")]);

        AssertChecksClean("out.qcow2");
        AssertSameDisk("src.raw", "raw", "out.qcow2");
        Assert.Equal(NonZeroUnits(disk, 4096, compress ? 4096 : SparseGranule), MappedUnits("out.qcow2", 4096, depth: 0, includeZero: false));
    }

    public static TheoryData<string[]> FailingConvertOptions => new()
    {
        new[] { "-o", "cluster_size=1000" },
        new[] { "-o", "cluster_size=4M" },
        new[] { "-o", "compat=0.10,lazy_refcounts=on" },
        new[] { "-o", "compat=0.10,refcount_bits=8" },
        new[] { "-o", "compat=0.10,extended_l2=on" },
        new[] { "-o", "compat=0.10,compression_type=zstd" },
        new[] { "-o", "compat=1.0" },
        new[] { "-o", "compression_type=lz4" },
        new[] { "-o", "refcount_bits=3" },
        new[] { "-o", "refcount_bits=128" },
        new[] { "-o", "refcount_bits=16k" },
        new[] { "-o", "extended_l2=maybe" },
        new[] { "-o", "extended_l2=on,cluster_size=8k" },
        new[] { "-o", "foo=1" },
        new[] { "-o", "lazy_refcounts=ON" },
        new[] { "-o", "backing_file=base.raw" },
        new[] { "-B", "base.raw" },
        new[] { "-o", "preallocation=foo" },
        new[] { "-c", "-o", "compat=0.10,compression_type=zstd" },
    };

    [Theory]
    [MemberData(nameof(FailingConvertOptions))]
    public void Convert_option_mistakes_fail_like_qemu_img_and_leave_no_file(string[] options)
    {
        File.WriteAllBytes(F("src.raw"), new byte[MiB]);
        File.WriteAllBytes(F("base.raw"), new byte[MiB]);
        var qemu = Tools.QemuImgRaw(_dir.Path, ["convert", "-O", "qcow2", .. options, F("src.raw"), F("theirs.qcow2")]);
        Assert.Equal(1, qemu.ExitCode);

        var result = QedCli.Run(["convert", "-O", "qcow2", .. options, F("src.raw"), F("ours.qcow2")]);

        Assert.Equal(1, result.ExitCode);
        Assert.False(File.Exists(F("ours.qcow2")));
        string expected = QedCli.AsQed(QedCli.Lines(qemu.StdErr)[0]).Replace(F("theirs.qcow2"), F("ours.qcow2"), StringComparison.Ordinal);
        string ours = QedCli.Lines(result.StdErr)[0];
        // qed's convert names the destination before -o parsing errors (as its create does); qemu-img's convert names no file there.
        if (!expected.Contains(F("ours.qcow2"), StringComparison.Ordinal))
        {
            ours = ours.Replace($"{F("ours.qcow2")}: ", "", StringComparison.Ordinal);
        }
        Assert.Equal(expected, ours);
    }

    public static TheoryData<string[]> CreateOptionSets => new()
    {
        new[] { "FILE", "1G" },
        new[] { "-o", "compat=0.10", "FILE", "1G" },
        new[] { "-o", "cluster_size=512", "FILE", "1G" },
        new[] { "-o", "cluster_size=4k,refcount_bits=1", "FILE", "100M" },
        new[] { "-o", "cluster_size=2M,refcount_bits=64", "FILE", "3G" },
        new[] { "-o", "extended_l2=on,lazy_refcounts=yes,compression_type=zstd", "FILE", "64M" },
        new[] { "-o", "refcount_bits=0x8", "FILE", "1000" },
        new[] { "-o", "size=5M,compat=v2", "FILE" },
        new[] { "-b", "base.raw", "-F", "raw", "FILE" },
        new[] { "-b", "base.raw", "-F", "raw", "-o", "compat=0.10", "FILE", "8M" },
        new[] { "-b", "base.raw", "-F", "raw", "-o", "cluster_size=512", "FILE" },
        new[] { "FILE", "0" },
    };

    /// <summary><c>qed create -f qcow2</c>: qemu-img's announcement, a clean image, and the fields qemu-img's image of the same options has.</summary>
    [Theory]
    [MemberData(nameof(CreateOptionSets))]
    public void Create_makes_an_image_like_qemu_img(string[] options)
    {
        File.WriteAllBytes(F("base.raw"), new byte[3 * MiB]);
        var qemu = Tools.QemuImgRaw(_dir.Path, ["create", "-f", "qcow2", .. options.Select(o => o == "FILE" ? F("theirs.qcow2") : o)]);
        Assert.True(qemu.ExitCode == 0, qemu.ToString());

        var result = QedCli.Run(["create", "-f", "qcow2", .. options.Select(o => o == "FILE" ? F("ours.qcow2") : o)]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(qemu.StdOut.Replace(F("theirs.qcow2"), F("ours.qcow2"), StringComparison.Ordinal), result.StdOut);
        AssertChecksClean("ours.qcow2");
        Assert.Equal(InfoFields("theirs.qcow2"), InfoFields("ours.qcow2"));
        var compare = Tools.QemuImgRaw(_dir.Path, "compare", F("theirs.qcow2"), F("ours.qcow2"));
        Assert.True(compare.ExitCode == 0, compare.ToString());
    }

    public static TheoryData<string[]> FailingCreateOptions => new()
    {
        new[] { "-o", "cluster_size=1000", "FILE", "1G" },
        new[] { "-o", "compat=0.10,lazy_refcounts=on", "FILE", "1G" },
        new[] { "-o", "cluster_size=1000,compat=0.10,lazy_refcounts=on", "FILE", "1G" },
        new[] { "-o", "refcount_bits=3,compat=0.10,lazy_refcounts=on", "FILE", "1G" },
        new[] { "-o", "compression_type=zstd,compat=0.10,refcount_bits=8", "FILE", "1G" },
        new[] { "-o", "compat=v2,extended_l2=on,cluster_size=4k", "FILE", "1G" },
        new[] { "-o", "backing_fmt=raw", "FILE", "1G" },
        new[] { "-o", "backing_fmt=raw,cluster_size=1000", "FILE", "1G" },
        new[] { "-o", "compat=1.0,compression_type=lz4", "FILE", "1G" },
        new[] { "-o", "refcount_bits=k,extended_l2=maybe", "FILE", "1G" },
        new[] { "-o", "extended_l2=maybe,foo=1", "FILE", "1G" },
        new[] { "-o", "refcount_bits=-1", "FILE", "1G" },
        new[] { "-o", "refcount_bits=0", "FILE", "1G" },
        new[] { "-o", "refcount_bits=16.0", "FILE", "1G" },
        new[] { "-o", "cluster_size=512", "FILE", "200G" },
        new[] { "-o", "cluster_size=512", "FILE", "137438953984" },
        new[] { "-o", "cluster_size=2M", "FILE", "4E" },
        new[] { "-o", "extended_l2=on,cluster_size=512", "FILE", "1G" },
        new[] { "-o", "preallocation=metadata,backing_file=base.raw,backing_fmt=raw", "FILE", "1G" },
        new[] { "-u", "-b", "LONG", "-F", "raw", "FILE", "1G" },
        new[] { "-u", "-b", "NAME400", "-F", "raw", "-o", "cluster_size=512", "FILE", "1G" },
    };

    [Theory]
    [MemberData(nameof(FailingCreateOptions))]
    public void Create_option_mistakes_fail_like_qemu_img_and_leave_no_file(string[] options)
    {
        File.WriteAllBytes(F("base.raw"), new byte[MiB]);
        string Expand(string o, string file) => o switch
        {
            "FILE" => file,
            "LONG" => new string('a', 1100),
            "NAME400" => new string('a', 400),
            _ => o,
        };
        var qemu = Tools.QemuImgRaw(_dir.Path, ["create", "-f", "qcow2", .. options.Select(o => Expand(o, F("theirs.qcow2")))]);
        Assert.Equal(1, qemu.ExitCode);

        var result = QedCli.Run(["create", "-f", "qcow2", .. options.Select(o => Expand(o, F("ours.qcow2")))]);

        Assert.Equal(1, result.ExitCode);
        Assert.False(File.Exists(F("ours.qcow2")), "a refused create must not leave a file");
        Assert.Equal(qemu.StdOut.Replace(F("theirs.qcow2"), F("ours.qcow2"), StringComparison.Ordinal), result.StdOut);
        Assert.Equal(QedCli.AsQed(QedCli.Lines(qemu.StdErr)[0]).Replace(F("theirs.qcow2"), F("ours.qcow2"), StringComparison.Ordinal),
            QedCli.Lines(result.StdErr)[0]);
    }

    public static TheoryData<string, string> FixtureConversions()
    {
        var data = new TheoryData<string, string>();
        // Q16 is encrypted (refused) and Q17 names its data file relative to the working directory.
        foreach (var fixture in Qcow2Fixtures.All.Where(f => f.Name is not ("Q16" or "Q17")))
        {
            data.Add(fixture.Name, "");
            data.Add(fixture.Name, "-c -o compression_type=zstd,extended_l2=on");
        }
        return data;
    }

    /// <summary>qcow2 to qcow2: every §16 fixture (our reader, our writer) gives an image whose disk has the fixture's §16.2 digest as qemu-img reads it.</summary>
    [Theory]
    [MemberData(nameof(FixtureConversions))]
    public void Qcow2_fixtures_convert_to_qcow2_with_the_same_disk(string name, string options)
    {
        var fixture = Qcow2Fixtures.Get(name);

        QedCli.Ok(["convert", "-O", "qcow2", .. options.Split(' ', StringSplitOptions.RemoveEmptyEntries), fixture.Path, F("out.qcow2")]);

        AssertChecksClean("out.qcow2");
        Assert.Equal(fixture.Digest, Tools.QemuFlattenDigest(_dir.Path, F("out.qcow2"), "qcow2"));
    }

    /// <summary>An overlay of a qcow2 backing file (fixture Q09: zero clusters over its base) holds what differs and reads as the source.</summary>
    [Theory]
    [InlineData("")]
    [InlineData("-o compat=0.10")]
    [InlineData("-o extended_l2=on")]
    public void Overlay_of_a_qcow2_backing_file_reads_as_the_source(string options)
    {
        var fixture = Qcow2Fixtures.Get("Q09");
        string baseImage = Path.Combine(Qcow2Fixtures.Directory, "Q09-base.qcow2");

        QedCli.Ok(["convert", "-O", "qcow2", .. options.Split(' ', StringSplitOptions.RemoveEmptyEntries), "-B", baseImage, "-F", "qcow2", fixture.Path, F("out.qcow2")]);

        AssertChecksClean("out.qcow2");
        Assert.Equal(fixture.Digest, Tools.QemuFlattenDigest(_dir.Path, F("out.qcow2"), "qcow2"));
        var compare = Tools.QemuImgRaw(_dir.Path, "compare", fixture.Path, F("out.qcow2"));
        Assert.True(compare.ExitCode == 0, compare.ToString());
    }

    /// <summary><c>-o help</c> lists qemu-img's lines for the options qed takes (preallocation: only <c>off</c>).</summary>
    [Fact]
    public void Option_help_lines_are_qemu_img_s()
    {
        string qemu = Tools.QemuImg(_dir.Path, "create", "-f", "qcow2", "-o", "help").StdOut;

        string ours = QedCli.Ok("create", "-f", "qcow2", "-o", "help").StdOut;

        string[] lines = QedCli.Lines(ours);
        Assert.Equal("Supported qcow2 options:", lines[0]);
        Assert.Equal(10, lines.Length - 1);
        foreach (string line in lines[1..].Where(l => !l.Contains("preallocation", StringComparison.Ordinal)))
        {
            Assert.Contains(line + "\n", qemu, StringComparison.Ordinal);
        }
        Assert.Equal(ours, QedCli.Ok("convert", "-O", "qcow2", "-o", "help", "a", "b").StdOut);
    }

    /// <summary>
    /// A seeded raw disk of 20 to 40 MiB (not always a multiple of 512 bytes): random bytes, compressible text, single-byte
    /// patterns and explicit zeros (data in the raw file, but zeros to convert), at aligned and unaligned places.
    /// </summary>
    private static byte[] BuildSource(Random random, string path)
    {
        long size = (20L * MiB) + random.Next(0, 20 * MiB / 512) * 512L + (random.Next(4) == 0 ? random.Next(1, 512) : 0);
        byte[] disk = new byte[size];
        int pieces = random.Next(8, 20);
        for (int i = 0; i < pieces; i++)
        {
            int length = random.Next(4) == 0 ? random.Next(1, 2048) : random.Next(4096, 3 * MiB);
            long offset = random.Next(2) == 0 ? random.NextInt64(0, size) : random.NextInt64(0, size / 65536) * 65536;
            length = (int)Math.Min(length, size - offset);
            var target = disk.AsSpan((int)offset, length);
            switch (random.Next(4))
            {
                case 0:
                    random.NextBytes(target);
                    break;
                case 1:
                    for (int j = 0; j < length; j++)
                    {
                        target[j] = (byte)("0123456789\n"[(int)((offset + j) % 11)] + (j / 4096 % 3));
                    }
                    break;
                case 2:
                    target.Fill((byte)random.Next(1, 256));
                    break;
                default:
                    target.Clear();
                    break;
            }
        }
        File.WriteAllBytes(path, disk);
        return disk;
    }

    /// <summary>Changes a copy of a backing disk: new bytes, zeroed ranges, ranges written with what they already hold.</summary>
    private static void Mutate(Random random, byte[] disk)
    {
        int changes = random.Next(6, 14);
        for (int i = 0; i < changes; i++)
        {
            int length = random.Next(1, 2 * MiB);
            int offset = random.Next(0, disk.Length);
            length = Math.Min(length, disk.Length - offset);
            var target = disk.AsSpan(offset, length);
            switch (random.Next(3))
            {
                case 0:
                    random.NextBytes(target);
                    break;
                case 1:
                    target.Clear();
                    break;
                default:
                    target.Fill((byte)random.Next(256));
                    break;
            }
        }
    }

    /// <summary>
    /// Indexes of the units of <paramref name="unit"/> bytes that the output should hold: those of every zero-detection
    /// granule (<paramref name="sparse"/>: the default <c>-S</c> of 4 KiB, or the cluster when compressing; the unit when
    /// larger) that holds a non-zero byte.
    /// </summary>
    private static SortedSet<long> NonZeroUnits(byte[] disk, long unit, long sparse)
    {
        var units = new SortedSet<long>();
        long granule = Math.Max(sparse, unit);
        for (long g = 0; g * granule < disk.Length; g++)
        {
            int start = (int)(g * granule);
            if (disk.AsSpan(start, (int)Math.Min(granule, disk.Length - start)).IndexOfAnyExcept((byte)0) >= 0)
            {
                units.UnionWith(UnitsOf(g, granule, unit, disk.Length));
            }
        }
        return units;
    }

    /// <summary>The units of granule <paramref name="g"/> that lie on a disk of <paramref name="length"/> bytes.</summary>
    private static IEnumerable<long> UnitsOf(long g, long granule, long unit, long length)
    {
        for (long u = g * granule / unit; u * unit < Math.Min((g + 1) * granule, length); u++)
        {
            yield return u;
        }
    }

    /// <summary>Indexes of the units that <c>qemu-img map</c> shows allocated in the image itself (depth 0): data, and with <paramref name="includeZero"/> zero clusters too.</summary>
    private SortedSet<long> MappedUnits(string file, long unit, int depth, bool includeZero)
    {
        string map = Tools.QemuImg(_dir.Path, "map", "--output=json", F(file)).StdOut;
        var units = new SortedSet<long>();
        foreach (Match m in MapEntry().Matches(map))
        {
            bool data = m.Groups["data"].Value == "true", zero = m.Groups["zero"].Value == "true";
            if (int.Parse(m.Groups["depth"].Value) != depth || !(data || (includeZero && zero && m.Groups["present"].Value == "true")))
            {
                continue;
            }
            long start = long.Parse(m.Groups["start"].Value), end = start + long.Parse(m.Groups["length"].Value);
            for (long u = start / unit; u * unit < end; u++)
            {
                units.Add(u);
            }
        }
        return units;
    }

    private JsonElement AssertChecksClean(string file)
    {
        var check = Tools.QemuImgRaw(_dir.Path, "check", "--output=json", F(file));
        Assert.True(check.ExitCode == 0, check.ToString());
        var report = CheckReport.From(check);
        Assert.True(report is { Corruptions: 0, Leaks: 0, CheckErrors: 0 }, check.ToString());
        return JsonDocument.Parse(check.StdOut).RootElement.Clone();
    }

    private JsonElement Check(string file) =>
        JsonDocument.Parse(Tools.QemuImg(_dir.Path, "check", "--output=json", F(file)).StdOut).RootElement.Clone();

    private void AssertSameDisk(string source, string sourceFormat, string output)
    {
        var compare = Tools.QemuImgRaw(_dir.Path, "compare", "-f", sourceFormat, "-F", "qcow2", F(source), F(output));
        Assert.True(compare.ExitCode == 0, compare.ToString());
    }

    private JsonElement Info(string file) =>
        JsonDocument.Parse(Tools.QemuImg(_dir.Path, "info", "--output=json", F(file)).StdOut).RootElement.Clone();

    /// <summary>What qemu-img info says about the image that does not depend on who wrote it: size, cluster size, backing fields, dirty flag, format-specific data.</summary>
    private string InfoFields(string file)
    {
        var info = Info(file);
        var fields = new List<string>();
        foreach (var property in info.EnumerateObject())
        {
            if (property.Name is not ("filename" or "actual-size" or "full-backing-filename"))
            {
                fields.Add($"{property.Name}={property.Value.GetRawText()}");
            }
        }
        return string.Join("\n", fields);
    }

    [GeneratedRegex(@"""start"": (?<start>\d+), ""length"": (?<length>\d+), ""depth"": (?<depth>\d+), ""present"": (?<present>\w+), ""zero"": (?<zero>\w+), ""data"": (?<data>\w+)")]
    private static partial Regex MapEntry();
}
