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
    private const string SuffixHelp = "You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.";

    private static readonly GetOpt s_options = new("hc:d:f:ni:o:qs:S:t:wU",
        new LongOption("help", false, "h"),
        new LongOption("flush-interval", true),
        new LongOption("pattern", true),
        new LongOption("no-drain", false),
        new LongOption("force-share", false, "U"),
        ImageOpener.L2CacheSizeOption);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = s_options.Parse(args);
        var settings = new BenchSettings();
        string? format = null;
        string cache = "writeback";
        bool nativeAio = false;
        bool quiet = false;
        bool forceShare = false;
        int? step = null;
        long? l2CacheSize = null;
        foreach (var option in parsed.Options)
        {
            string value = option.Value ?? "";
            switch (option.Key)
            {
                case "c": settings = settings with { Count = ParseCount(value, "Invalid request count specified") }; break;
                case "d":
                    int depth = ParseCount(value, "Invalid queue depth specified");
                    settings = settings with { Depth = depth > 0 ? depth : throw new CliException("Invalid queue depth specified") };
                    break;
                case "f": format = value; break;
                case "n": nativeAio = true; break;
                case "i":
                    // threads adds nothing, as in qemu-img: a -n given before it still asks for native AIO.
                    nativeAio |= value switch
                    {
                        "native" => true,
                        "threads" or "io_uring" => false,
                        _ => throw new CliException($"Invalid aio option: {value}"),
                    };
                    break;
                case "o": settings = settings with { Offset = ParseSize(value, "offset", long.MaxValue) }; break;
                case "q": quiet = true; break;
                case "s": settings = settings with { Size = (int)ParseSize(value, "buffer size", int.MaxValue) }; break;
                case "S": step = (int)ParseSize(value, "step_size", int.MaxValue); break;
                case "t":
                    cache = ImageOpener.IsValidCacheMode(value) ? value : throw new CliException("Invalid cache mode");
                    break;
                case "w": settings = settings with { Write = true }; break;
                case "U": forceShare = true; break;
                case "flush-interval": settings = settings with { FlushInterval = ParseCount(value, "Invalid flush interval specified") }; break;
                case "no-drain": settings = settings with { DrainOnFlush = false }; break;
                case "pattern":
                    settings = settings with
                    {
                        Pattern = UnsignedParser.TryParse(value, byte.MaxValue, out ulong pattern) ? (byte)pattern : throw new CliException("Invalid pattern byte specified"),
                    };
                    break;
                case "l2-cache-size": l2CacheSize = ImageOpener.ParseL2CacheSize(value); break;
                case "h":
                    HelpText.Write(context.Out);
                    return 0;
            }
        }
        // A step of 0 means "not given": consecutive requests are adjacent.
        settings = settings with { Step = step is > 0 ? step.Value : settings.Size };
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
        if (nativeAio && !ImageOpener.IsDirectCacheMode(cache))
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
        UnsignedParser.TryParse(text, int.MaxValue, out ulong value) ? (int)value : throw new CliException(error);

    /// <summary>A size option in qemu-img's size syntax, worded as qemu-img words its size errors.</summary>
    private static long ParseSize(string text, string name, long maximum)
    {
        if (SizeParser.TryParse(text, out long value, out var error) && value <= maximum)
        {
            return value;
        }
        throw new CliException(error == SizeParseError.Invalid
            ? $"Invalid {name} specified. {SuffixHelp}"
            : $"Invalid {name} specified. Must be between 0 and {maximum}.");
    }
}
