using System.Text.RegularExpressions;
using Qed.Cli.Commands.Bench;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed bench</c> against <c>qemu-img bench</c>: the same lines (the time replaced), the same exit status and
/// errors, the same data written; plus our L2 cache line and <c>--l2-cache-size</c> on every command that opens an image.
/// </summary>
public partial class BenchCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [GeneratedRegex(@"^Run completed in \d+\.\d{3} seconds\.$", RegexOptions.Multiline)]
    private static partial Regex RunCompleted();

    [GeneratedRegex(@"^L2 cache: (\d+) hits, (\d+) misses, (\d+) evictions$")]
    private static partial Regex CacheLine();

    private static string NormalizeTime(string output) => RunCompleted().Replace(output, "Run completed in T seconds.");

    /// <summary>Two identical 4 MiB QED images made by qemu-img, "theirs.qed" and "ours.qed".</summary>
    private (string Theirs, string Ours) MakePair(string format = "qed", string size = "4M", params string[] createOptions)
    {
        string theirs = _dir.File("theirs." + format);
        string ours = _dir.File("ours." + format);
        foreach (string file in new[] { theirs, ours })
        {
            Tools.QemuImg(_dir.Path, ["create", "-f", format, .. createOptions, file, size]);
        }
        return (theirs, ours);
    }

    private (ToolResult Qemu, ToolResult Ours) RunBoth(string options, string format = "qed")
    {
        var (theirs, ours) = MakePair(format);
        string[] arguments = options.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var qemu = Tools.QemuImgRaw(_dir.Path, ["bench", .. arguments, theirs]);
        var result = QedCli.Run(["bench", .. arguments, ours]);
        return (qemu, result);
    }

    /// <summary>Our output without the L2 cache line (which must be the last line when present).</summary>
    private static string WithoutCacheLine(string output, bool expectLine)
    {
        string[] lines = QedCli.Lines(output);
        if (!expectLine)
        {
            Assert.DoesNotContain(lines, l => l.StartsWith("L2 cache:", StringComparison.Ordinal));
            return output;
        }
        Assert.NotEmpty(lines);
        Assert.Matches(CacheLine(), lines[^1]);
        return string.Concat(lines[..^1].Select(l => l + "\n"));
    }

    [Theory]
    [InlineData("-c 100")]
    [InlineData("-c 100 -w")]
    [InlineData("-c 100 -d 8 -w --flush-interval=10")]
    [InlineData("-c 100 -d 8 -w --flush-interval=10 --no-drain")]
    [InlineData("-c 100 -d 1 -w --flush-interval=1")]
    [InlineData("-c 10 -w --flush-interval=0")]
    [InlineData("-c 10 --no-drain")]
    [InlineData("-c 0")]
    [InlineData("-c 50 -d 4 -o 512 -s 1k -S 8k")]
    [InlineData("-c 20 -s 1.5k")]
    [InlineData("-c 0x10 -d 010")]
    [InlineData("-c 10 -S 0")]
    [InlineData("-c 10 -s 0")]
    [InlineData("-c 300 -s 64k -S 64k")]
    [InlineData("-c 7 -s 4k -S 3M -d 1")]
    [InlineData("-c 5 -s 4k -S 4M -o 3M -d 1")]
    [InlineData("-c 2 -s 4M -S 4M")]
    [InlineData("-c 10 -d 65536")]
    [InlineData("-c 10 -t none -n")]
    [InlineData("-c 10 -t off")]
    [InlineData("-c 10 -t directsync -i native")]
    [InlineData("-c 10 -t unsafe -i threads")]
    [InlineData("-c 10 -t writethrough -i io_uring")]
    [InlineData("-c 10 -U")]
    [InlineData("-c 10 --force-share")]
    [InlineData("-c 10 -f qed")]
    [InlineData("-c 10 -o 0x1000")]
    [InlineData("-c 10 --pattern=0x10 -w")]
    public void Lines_match_qemu_img_bench(string options)
    {
        var (qemu, ours) = RunBoth(options);
        Assert.Equal(0, qemu.ExitCode);
        Assert.Equal(0, ours.ExitCode);
        Assert.Equal("", ours.StdErr);
        Assert.Matches(RunCompleted(), ours.StdOut);
        Assert.Equal(NormalizeTime(qemu.StdOut), NormalizeTime(WithoutCacheLine(ours.StdOut, expectLine: true)));
    }

    [Theory]
    [InlineData("-c 100 -q")]
    [InlineData("-c 100 -w -q --pattern=7")]
    [InlineData("-c 100 -d 8 -w --flush-interval=10 -q")]
    public void Quiet_prints_what_qemu_img_prints_and_no_cache_line(string options)
    {
        // qemu-img 7.2 accepts -q for bench but still prints both lines; qed does the same and drops only its own extra line.
        var (qemu, ours) = RunBoth(options);
        Assert.Equal(0, ours.ExitCode);
        Assert.Equal(NormalizeTime(qemu.StdOut), NormalizeTime(WithoutCacheLine(ours.StdOut, expectLine: false)));
    }

    [Fact]
    public void Raw_images_work_and_have_no_cache_line()
    {
        var (qemu, ours) = RunBoth("-c 100 -f raw -w --pattern=9", "raw");
        Assert.Equal(0, ours.ExitCode);
        Assert.Equal(NormalizeTime(qemu.StdOut), NormalizeTime(WithoutCacheLine(ours.StdOut, expectLine: false)));
        Assert.Equal(File.ReadAllBytes(_dir.File("theirs.raw")), File.ReadAllBytes(_dir.File("ours.raw")));
    }

    [Theory]
    [InlineData("-w --pattern=0xab -c 100 -s 4k -S 8k")]
    [InlineData("-w --pattern=0x11 -c 300 -d 16 -s 64k -S 192k -o 64k")]
    [InlineData("-w --pattern=3 -c 500 -d 8 --flush-interval=16")]
    [InlineData("-w --pattern=3 -c 500 -d 8 --flush-interval=16 --no-drain")]
    [InlineData("-w --pattern=0xff -c 8 -d 4 -s 1M -S 3M")]
    [InlineData("-w --pattern=0x7f -c 1000 -d 64 -s 512 -S 4100")]
    [InlineData("-w -c 100 -s 8k")]
    public void Written_data_is_what_qemu_img_bench_writes(string options)
    {
        var (qemu, ours) = RunBoth(options);
        Assert.Equal(0, qemu.ExitCode);
        Assert.Equal(0, ours.ExitCode);
        Assert.Equal(
            Tools.QemuFlattenDigest(_dir.Path, _dir.File("theirs.qed")),
            Tools.QemuFlattenDigest(_dir.Path, _dir.File("ours.qed")));
        Assert.Equal(0, Tools.QemuImgRaw(_dir.Path, "check", _dir.File("ours.qed")).ExitCode);
    }

    [Fact]
    public void Pattern_reads_back_where_the_requests_went()
    {
        var (_, ours) = MakePair();
        QedCli.Ok("bench", "-w", "--pattern=0xa5", "-c", "64", "-d", "16", "-s", "4k", "-S", "64k", "-o", "8k", ours);
        using (var image = QedImage.Open(ours, new ImageOpenOptions { ReadOnly = true }))
        {
            var buffer = new byte[64 * 1024];
            for (long offset = 0; offset < image.Size; offset += buffer.Length)
            {
                image.Read(buffer, offset);
                // Request k covered [8k + 64k*k, +4k): one 4 KiB run of 0xa5 per 64 KiB, zeros elsewhere.
                Assert.All(buffer.AsSpan(0, 8192).ToArray(), b => Assert.Equal(0, b));
                Assert.All(buffer.AsSpan(8192, 4096).ToArray(), b => Assert.Equal(0xa5, b));
                Assert.All(buffer.AsSpan(12288).ToArray(), b => Assert.Equal(0, b));
            }
        }
        // Closed first: qemu-io opens writable, which our read lock (QED refuses writers) would rightly refuse.
        var read = Tools.QemuIo(_dir.Path, "qed", ours, "read -P 0xa5 8k 4k", "read -P 0xa5 4040k 4k", "read -P 0 12k 52k");
        Assert.DoesNotContain("verification failed", read.StdOut, StringComparison.Ordinal);
    }

    [Fact]
    public void Writes_wrap_at_the_end_of_the_image()
    {
        var (_, ours) = MakePair(size: "1M");
        // 40 requests of 4 KiB, 96 KiB apart, from 0: they wrap at 1 MiB, so the offsets are (96k * i) mod 1M.
        QedCli.Ok("bench", "-w", "--pattern=0x3c", "-c", "40", "-d", "8", "-S", "96k", ours);
        var written = Enumerable.Range(0, 40).Select(i => 96L * 1024 * i % (1 << 20)).ToHashSet();
        using var image = QedImage.Open(ours, new ImageOpenOptions { ReadOnly = true });
        var buffer = new byte[4096];
        for (long offset = 0; offset < image.Size; offset += 4096)
        {
            image.Read(buffer, offset);
            byte expected = written.Contains(offset) ? (byte)0x3c : (byte)0;
            Assert.True(buffer.All(b => b == expected), $"offset {offset}");
        }
    }

    [Theory]
    [InlineData("-c 10 -o 5M")]
    [InlineData("-c 10 -o 4M")]
    [InlineData("-c 3 -s 1M -S 3584k -d 1")]
    [InlineData("-c 2 -s 4M -S 1M")]
    [InlineData("-c 10 -s 5M")]
    [InlineData("-c 10 -w -o 5M")]
    public void Requests_past_the_end_fail_as_in_qemu_img(string options)
    {
        var (qemu, ours) = RunBoth(options);
        Assert.Equal(1, qemu.ExitCode);
        Assert.Equal(qemu.StdOut, ours.StdOut);
        Assert.Equal(QedCli.AsQed(qemu.StdErr), ours.StdErr);
        Assert.Equal("qed: Failed request: Input/output error\n", ours.StdErr);
        Assert.Equal(1, ours.ExitCode);
    }

    [Theory]
    [InlineData("-c x")]
    [InlineData("-c -1")]
    [InlineData("-c 1k")]
    [InlineData("-c 08")]
    [InlineData("-c 0x")]
    [InlineData("-c 2147483648")]
    [InlineData("-c 4294967296")]
    [InlineData("-d x")]
    [InlineData("-d -1")]
    [InlineData("-d 2147483648")]
    [InlineData("--pattern=256")]
    [InlineData("--pattern=x")]
    [InlineData("--pattern=-1")]
    [InlineData("-w --flush-interval=x")]
    [InlineData("-w --flush-interval=-1")]
    [InlineData("--flush-interval=10")]
    [InlineData("--flush-interval=10 -d 8")]
    [InlineData("-w --flush-interval=3 -d 4")]
    [InlineData("-s 2G")]
    [InlineData("-S 2G")]
    [InlineData("-o 9E")]
    [InlineData("-o 8E")]
    [InlineData("-t foo")]
    [InlineData("-i foo")]
    [InlineData("-i native")]
    [InlineData("-n")]
    [InlineData("-n -i threads")]
    [InlineData("-U -w")]
    [InlineData("-x")]
    [InlineData("-c")]
    [InlineData("-c x -d y")]
    public void Argument_errors_match_qemu_img(string options)
    {
        var (qemu, ours) = RunBoth(options);
        Assert.Equal(1, qemu.ExitCode);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal("", ours.StdOut);
        // Messages that name the file name theirs.qed for qemu-img and ours.qed for qed.
        Assert.Equal(QedCli.Lines(qemu.StdErr.Replace("theirs.qed", "ours.qed", StringComparison.Ordinal)).Select(QedCli.AsQed), QedCli.Lines(ours.StdErr));
    }

    [Theory]
    [InlineData("-o x")]
    [InlineData("-o -1")]
    [InlineData("-s x")]
    [InlineData("-S x")]
    [InlineData("-S -1")]
    public void Size_errors_are_qemu_img_wording_on_one_line(string options)
    {
        // qemu-img splits this message over two error lines; qed keeps every error on one.
        var (qemu, ours) = RunBoth(options);
        string[] qemuLines = QedCli.Lines(qemu.StdErr);
        Assert.Equal(2, qemuLines.Length);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal(QedCli.AsQed(qemuLines[0]) + " " + qemuLines[1]["qemu-img: ".Length..] + "\n", ours.StdErr);
    }

    [Theory]
    [InlineData("")]
    [InlineData("a b")]
    public void Needs_exactly_one_file(string files)
    {
        string[] arguments = ["-c", "1", .. files.Split(' ', StringSplitOptions.RemoveEmptyEntries)];
        var qemu = Tools.QemuImgRaw(_dir.Path, ["bench", .. arguments]);
        var ours = QedCli.Run(["bench", .. arguments]);
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal(QedCli.Lines(qemu.StdErr).Select(QedCli.AsQed), QedCli.Lines(ours.StdErr));
    }

    [Fact]
    public void Missing_file_is_one_line_and_exit_1()
    {
        string path = _dir.File("nope.qed");
        var result = QedCli.Run("bench", "-c", "1", path);
        Assert.Equal(1, result.ExitCode);
        Assert.Equal("", result.StdOut);
        Assert.Equal($"qed: Could not open '{path}': No such file or directory\n", result.StdErr);
    }

    [Fact]
    public void Depth_zero_is_refused()
    {
        // qemu-img accepts -d 0 and then waits forever for a request it never sends; qed refuses it.
        var (_, ours) = MakePair();
        var result = QedCli.Run("bench", "-c", "10", "-d", "0", ours);
        Assert.Equal(1, result.ExitCode);
        Assert.Equal("qed: Invalid queue depth specified\n", result.StdErr);
    }

    [Fact]
    public void Cache_line_counts_the_l2_lookups_of_the_run()
    {
        string path = _dir.File("tables.qed");
        // 4 KiB clusters, 2-cluster tables: one L2 table maps 4 MiB; a 4 KiB slice of it maps 2 MiB.
        Tools.QemuImg(_dir.Path, "create", "-f", "qed", "-o", "cluster_size=4096,table_size=2", path, "64M");
        QedCli.Ok("bench", "-w", "--pattern=1", "-c", "1024", "-d", "16", "-s", "64k", path);

        var line = CacheLine().Match(QedCli.Lines(QedCli.Ok("bench", "-c", "16384", "-d", "16", path).StdOut)[^1]);
        long hits = long.Parse(line.Groups[1].Value), misses = long.Parse(line.Groups[2].Value), evictions = long.Parse(line.Groups[3].Value);
        Assert.Equal(16384, hits + misses);
        Assert.Equal(32, misses);
        Assert.Equal(0, evictions);

        // A cache of one slice: every new slice evicts the previous one.
        line = CacheLine().Match(QedCli.Lines(QedCli.Ok("bench", "-c", "16384", "-d", "1", "--l2-cache-size=4k", path).StdOut)[^1]);
        hits = long.Parse(line.Groups[1].Value);
        misses = long.Parse(line.Groups[2].Value);
        evictions = long.Parse(line.Groups[3].Value);
        Assert.Equal(16384, hits + misses);
        Assert.Equal(32, misses);
        Assert.Equal(31, evictions);
    }

    // ---- --l2-cache-size on every command that opens an image ----

    private string SmallImage()
    {
        string path = _dir.File("small.qed");
        Tools.QemuImg(_dir.Path, "create", "-f", "qed", path, "4M");
        Tools.QemuIo(_dir.Path, "qed", path, "write -P 0x42 0 128k");
        return path;
    }

    public static TheoryData<string> Commands => new() { "info", "check", "convert", "io", "bench" };

    private string[] CommandLine(string command, string image, params string[] extra) => command switch
    {
        "convert" => ["convert", .. extra, image, _dir.File($"out-{Guid.NewGuid():N}.raw")],
        "io" => ["io", .. extra, "-c", "read -P 0x42 0 128k", image],
        "bench" => ["bench", "-c", "10", "-q", .. extra, image],
        _ => [command, .. extra, image],
    };

    [Theory]
    [MemberData(nameof(Commands))]
    public void L2_cache_size_is_accepted(string command)
    {
        string image = SmallImage();
        var plain = QedCli.Run(CommandLine(command, image));
        Assert.Equal(0, plain.ExitCode);
        foreach (string value in new[] { "1M", "64k", "0", "0x10000", "1.5M", "512" })
        {
            var result = QedCli.Run(CommandLine(command, image, $"--l2-cache-size={value}"));
            Assert.Equal(0, result.ExitCode);
            Assert.Equal(NormalizeTime(QedCli.NormalizeStatistics(plain.StdOut)), NormalizeTime(QedCli.NormalizeStatistics(result.StdOut)));
        }
        Assert.Equal(0, QedCli.Run(CommandLine(command, image, "--l2-cache-size", "2M")).ExitCode);
    }

    [Theory]
    [MemberData(nameof(Commands))]
    public void Bad_l2_cache_size_is_a_one_line_error(string command)
    {
        string image = SmallImage();
        foreach (var (value, error) in new[]
        {
            ("lots", "qed: Invalid L2 cache size specified. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n"),
            ("1.5", "qed: Invalid L2 cache size specified. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n"),
            ("-4k", "qed: Invalid L2 cache size specified. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n"),
            ("16E", "qed: Invalid L2 cache size specified. Must be between 0 and 9223372036854775807.\n"),
        })
        {
            var result = QedCli.Run(CommandLine(command, image, $"--l2-cache-size={value}"));
            Assert.Equal(1, result.ExitCode);
            Assert.Equal("", result.StdOut);
            Assert.Equal(error, result.StdErr);
        }
        var missing = QedCli.Run([command, image, "--l2-cache-size"]);
        Assert.Equal(1, missing.ExitCode);
        Assert.Equal("qed: missing argument for option '--l2-cache-size'\nTry 'qed --help' for more information\n", missing.StdErr);
    }

    // ---- the runner against a recording device ----

    /// <summary>A device that records what the runner does: requests in flight, flushes, offsets.</summary>
    private sealed class RecordingDevice : Qed.IO.BlockDevice
    {
        private readonly object _sync = new();
        private int _inFlight;
        private bool _flushing;

        public RecordingDevice(long size) => Size = size;

        public override long Size { get; }
        public override bool IsReadOnly => false;
        public override string FormatName => "recording";
        public override string FileName => "recording";

        public int MaxInFlight { get; private set; }
        public List<long> Offsets { get; } = [];
        /// <summary>For each flush: requests completed and requests in flight when it started.</summary>
        public List<(int Completed, int InFlight)> Flushes { get; } = [];
        public int Completed { get; private set; }
        public int StartedDuringFlush { get; private set; }

        protected internal override ValueTask ReadCoreAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken) =>
            RequestAsync(offset);

        protected internal override ValueTask WriteCoreAsync(ReadOnlyMemory<byte> source, long offset, bool useAsync, CancellationToken cancellationToken) =>
            RequestAsync(offset);

        private async ValueTask RequestAsync(long offset)
        {
            lock (_sync)
            {
                _inFlight++;
                MaxInFlight = Math.Max(MaxInFlight, _inFlight);
                Offsets.Add(offset);
                if (_flushing)
                {
                    StartedDuringFlush++;
                }
            }
            // Complete out of order, some synchronously.
            int delay = Random.Shared.Next(4);
            if (delay > 0)
            {
                await Task.Delay(delay - 1).ConfigureAwait(false);
            }
            lock (_sync)
            {
                _inFlight--;
                Completed++;
            }
        }

        protected internal override async ValueTask FlushCoreAsync(bool useAsync, CancellationToken cancellationToken)
        {
            lock (_sync)
            {
                Flushes.Add((Completed, _inFlight));
                _flushing = true;
            }
            await Task.Delay(1).ConfigureAwait(false);
            lock (_sync)
            {
                _flushing = false;
            }
        }

        protected internal override ValueTask WriteZeroesCoreAsync(long offset, long length, bool mayUnmap, bool useAsync, CancellationToken cancellationToken) => throw new NotSupportedException();

        protected internal override ValueTask<Qed.IO.BlockStatus> GetStatusCoreAsync(long offset, long length, bool useAsync, CancellationToken cancellationToken) => throw new NotSupportedException();

        protected override ValueTask CloseCoreAsync(bool useAsync) => ValueTask.CompletedTask;
    }

    [Theory]
    [InlineData(1000, 16, 0, true)]
    [InlineData(1000, 16, 16, true)]
    [InlineData(1000, 16, 48, true)]
    [InlineData(1001, 8, 10, true)]
    [InlineData(37, 5, 7, true)]
    [InlineData(10, 3, 3, true)]
    [InlineData(3, 16, 16, true)]
    [InlineData(1000, 16, 16, false)]
    [InlineData(1001, 8, 10, false)]
    [InlineData(5, 64, 0, true)]
    [InlineData(0, 4, 4, true)]
    public async Task Runner_keeps_depth_in_flight_and_flushes_where_qemu_img_does(int count, int depth, int interval, bool drain)
    {
        var device = new RecordingDevice(1 << 20);
        var settings = new BenchSettings { Count = count, Depth = depth, Size = 4096, Step = 12288, Offset = 8192, Write = true, FlushInterval = interval, DrainOnFlush = drain };
        var (_, failure) = await BenchRunner.RunAsync(device, settings);

        Assert.Null(failure);
        Assert.Equal(count, device.Completed);
        Assert.True(device.MaxInFlight <= depth, $"{device.MaxInFlight} in flight");
        if (count >= 2 * depth && interval == 0)
        {
            Assert.Equal(depth, device.MaxInFlight);
        }
        // Request k at (8192 + 12288 k) mod 1 MiB, each once.
        var expected = Enumerable.Range(0, count).Select(k => (8192L + 12288L * k) % (1 << 20)).Order();
        Assert.Equal(expected, device.Offsets.Order());

        if (interval == 0)
        {
            Assert.Empty(device.Flushes);
            return;
        }
        // A flush whenever the requests not yet sent are a multiple of the interval: after count - k*interval completions.
        var boundaries = Enumerable.Range(0, count / interval + 1).Select(k => count - k * interval).Where(s => s > 0).Order().ToList();
        Assert.Equal(boundaries.Count, device.Flushes.Count);
        if (drain)
        {
            Assert.Equal(boundaries, device.Flushes.Select(f => f.Completed));
            Assert.All(device.Flushes, f => Assert.Equal(0, f.InFlight));
            Assert.Equal(0, device.StartedDuringFlush);
        }
    }
}
