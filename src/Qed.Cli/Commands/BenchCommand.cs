using System.Globalization;
using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Bench;
using Qed.Formats;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed bench [-c COUNT] [-d DEPTH] [-f FMT] [--flush-interval=N] [-i AIO] [-n] [--no-drain] [-o OFFSET]
/// [--pattern=BYTE] [-q] [-s SIZE] [-S STEP] [-t CACHE] [-w] [-U] [--l2-cache-size=SIZE] FILE</c>: qemu-img bench,
/// a sequential read or write benchmark with a fixed number of requests in flight.
/// </summary>
/// <remarks>
/// Prints qemu-img's lines (which it prints even with <c>-q</c>), then, unless <c>-q</c>, the L2 cache counters of
/// the run. Cache and AIO modes are accepted for compatibility: qed always goes through the host page cache (no
/// O_DIRECT) with .NET's asynchronous file I/O. Unlike qemu-img, a depth of 0 is refused (qemu-img waits forever).
/// Locks as qemu-img: <c>-w</c> takes the write lock, reads take the read locks, <c>-U</c> shares everything (reads only).
/// </remarks>
internal static class BenchCommand
{
    private static readonly CliOption<int> s_count = new('c', null, "COUNT", "requests to send (default 75000)",
        v => ParseCount(v, "Invalid request count specified"));

    private static readonly CliOption<int> s_depth = new('d', null, "DEPTH", "requests in flight (default 64)",
        v => ParseCount(v, "Invalid queue depth specified") is > 0 and int depth ? depth : throw new CliException("Invalid queue depth specified"));

    private static readonly CliOption<int> s_flushInterval = new('\0', "flush-interval", "N",
        "with -w, flush whenever the requests left are a multiple of N (N >= DEPTH)", v => ParseCount(v, "Invalid flush interval specified"));

    private static readonly CliOption<bool> s_aio = new('i', null, "AIO", "the AIO mode: threads, native or io_uring (accepted for compatibility)", v => v switch
    {
        // threads adds nothing, as in qemu-img: a -n given before it still asks for native AIO.
        "native" => true,
        "threads" or "io_uring" => false,
        _ => throw new CliException($"Invalid aio option: {v}"),
    });

    private static readonly CliFlag s_nativeAio = new('n', null, "native AIO (accepted for compatibility)");
    private static readonly CliFlag s_noDrain = new('\0', "no-drain", "do not wait for the requests in flight before a flush");
    private static readonly CliOption<long> s_offset = new('o', null, "OFFSET", "offset of the first request (default 0)", v => SizeParser.ParseArgument(v, "offset"));

    private static readonly CliOption<byte> s_pattern = new('\0', "pattern", "BYTE", "the byte writes are filled with (default 0)",
        v => CNumber.TryParseUnsigned(v, byte.MaxValue, out ulong pattern) ? (byte)pattern : throw new CliException("Invalid pattern byte specified"));

    private static readonly CliOption<int> s_size = new('s', null, "SIZE", "bytes per request (default 4096)",
        v => (int)SizeParser.ParseArgument(v, "buffer size", int.MaxValue));

    private static readonly CliOption<int> s_step = new('S', null, "STEP", "distance between consecutive requests (default SIZE)",
        v => (int)SizeParser.ParseArgument(v, "step_size", int.MaxValue));

    private static readonly CliOption<string> s_cache = CommonOptions.CacheMode('t', null,
        "the cache mode (accepted for compatibility; qed uses the page cache)", _ => "Invalid cache mode", checkLater: false);

    private static readonly CliFlag s_write = new('w', null, "write instead of read");

    /// <summary>The options of <c>qed bench</c>.</summary>
    public static OptionTable Options { get; } = new("bench", "FILE",
        """
        Send COUNT (default 75000) sequential read requests, or writes with -w, of
        SIZE bytes (default 4096), DEPTH (default 64) in flight, the first at OFFSET,
        each next one STEP bytes further (default SIZE), wrapping at the image size.
        Writes are filled with BYTE (default 0). With --flush-interval a flush is
        sent whenever the requests left are a multiple of N (N >= DEPTH), after the
        requests in flight completed unless --no-drain. Prints the time taken and
        the L2 cache hits, misses and evictions of the run (not with -q).
        -t, -i and -n are accepted for compatibility: qed has no O_DIRECT and
        always reads and writes through the host page cache.
        """,
        CommonOptions.Help, s_count, s_depth, CommonOptions.FormatLetter, s_flushInterval, s_noDrain, s_aio, s_nativeAio, s_offset,
        s_pattern, CommonOptions.Quiet, s_size, s_step, s_cache, s_write, CommonOptions.ForceShare, CommonOptions.L2CacheSize);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = Options.Parse(args);
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        var defaults = new BenchSettings();
        int size = parsed.Get(s_size, defaults.Size);
        // A step of 0 means "not given": consecutive requests are adjacent.
        int step = parsed.Get(s_step, 0);
        var settings = defaults with
        {
            Count = parsed.Get(s_count, defaults.Count),
            Depth = parsed.Get(s_depth, defaults.Depth),
            Offset = parsed.Get(s_offset, defaults.Offset),
            Size = size,
            Step = step > 0 ? step : size,
            Write = parsed.Has(s_write),
            Pattern = parsed.Get(s_pattern, defaults.Pattern),
            FlushInterval = parsed.Get(s_flushInterval, defaults.FlushInterval),
            DrainOnFlush = !parsed.Has(s_noDrain),
        };
        string? format = parsed.Get(CommonOptions.FormatLetter);
        string cache = parsed.Get(s_cache, "writeback");
        bool nativeAio = parsed.Has(s_nativeAio) || parsed.All(s_aio).Contains(true);
        bool quiet = parsed.Has(CommonOptions.Quiet);
        bool forceShare = parsed.Has(CommonOptions.ForceShare);
        long? l2CacheSize = parsed.GetValue(CommonOptions.L2CacheSize);
        string fileName = parsed.SingleImage();
        if (settings.FlushInterval != 0 && !settings.Write)
        {
            throw new CliException("--flush-interval is only available in write tests");
        }
        if (settings.FlushInterval != 0 && settings.FlushInterval < settings.Depth)
        {
            throw new CliException("Flush interval can't be smaller than depth");
        }
        if (forceShare && settings.Write)
        {
            throw new CliException($"Could not open '{fileName}': {ImageOpener.ForceShareNeedsReadOnly}");
        }

        using var device = ImageOpener.Open(fileName, format, readOnly: !settings.Write, l2CacheSize: l2CacheSize, forceShare: forceShare);
        if (nativeAio && !CacheModes.IsDirect(cache))
        {
            throw new CliException($"Could not open '{fileName}': aio=native was specified, but it requires cache.direct=on, which was not specified.");
        }

        context.Out.WriteLine(settings.Describe());
        if (settings.FlushInterval != 0)
        {
            context.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Sending flush every {settings.FlushInterval} requests"));
        }
        var imageFormat = ImageFormats.Of(device);
        var before = imageFormat.GetCacheStatistics(device);
        var (elapsed, failure) = BenchRunner.RunAsync(device, settings).GetAwaiter().GetResult();
        if (failure is not null)
        {
            return context.Error(failure);
        }
        context.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Run completed in {elapsed.TotalSeconds:F3} seconds."));
        if (!quiet && before is { } start && imageFormat.GetCacheStatistics(device) is { } end)
        {
            context.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"L2 cache: {end.Hits - start.Hits} hits, {end.Misses - start.Misses} misses, {end.Evictions - start.Evictions} evictions"));
        }
        return 0;
    }

    /// <summary>A count option: a C number (decimal, 0x hex or 0 octal) from 0 to <see cref="int.MaxValue"/>.</summary>
    private static int ParseCount(string text, string error) =>
        CNumber.TryParseUnsigned(text, int.MaxValue, out ulong value) ? (int)value : throw new CliException(error);
}
