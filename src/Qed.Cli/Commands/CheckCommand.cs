using Qed.Check;
using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Check;
using Qed.Formats;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed check [-f FMT] [-r leaks|all] [--output=human|json] [-q] [-T CACHE] [-U] [--l2-cache-size=SIZE] FILE</c>:
/// qemu-img check for the formats that have a check, with its wording, JSON keys and exit codes (0 clean, 1 the check could not run,
/// 2 corruptions, 3 only leaks, 63 a format without checks).
/// </summary>
/// <remarks>
/// Locks as qemu-img: without <c>-r</c> the check reads under QEMU's read locks (refused while another process writes,
/// unless <c>-U</c>), with <c>-r</c> it takes the write lock. Without <c>-r</c> the image is opened read-only: nothing on disk changes, not even a set need-check bit. With
/// <c>-r</c> it is opened writable without the automatic open-time repair, the repair runs, and when it fixed
/// anything the summary is printed and the image is checked again; that second check is what is reported and
/// decides the exit code, as in qemu-img. <c>-r leaks</c> only reclaims leaked clusters at the end of the file;
/// <c>-r all</c> also zeroes invalid table entries (qemu-img does both for either mode with QED).
/// </remarks>
internal static class CheckCommand
{
    /// <summary>qemu-img's exit status for a format that has no consistency check.</summary>
    public const int NotSupportedExitCode = 63;

    private static readonly GetOpt s_options = new("hf:r:T:qU",
        new LongOption("help", false, "h"),
        new LongOption("format", true, "f"),
        new LongOption("repair", true, "r"),
        new LongOption("output", true),
        new LongOption("force-share", false, "U"),
        ImageOpener.L2CacheSizeOption);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = s_options.Parse(args);
        string? format = null;
        string output = "human";
        string? cache = null;
        var mode = RepairMode.None;
        bool quiet = false;
        bool forceShare = false;
        long? l2CacheSize = null;
        foreach (var option in parsed.Options)
        {
            switch (option.Key)
            {
                case "f": format = option.Value; break;
                case "r": mode = ParseRepairMode(option.Value!); break;
                case "output": output = option.Value!; break;
                case "T": cache = option.Value; break;
                case "q": quiet = true; break;
                case "U": forceShare = true; break;
                case "l2-cache-size": l2CacheSize = ImageOpener.ParseL2CacheSize(option.Value!); break;
                case "h":
                    HelpText.Write(context.Out);
                    return 0;
            }
        }
        string fileName = parsed.SingleImage();
        ParsedArguments.CheckOutputFormat(output);
        // The cache mode only changes how qemu reads the file; qed accepts the valid ones and reads through the page cache.
        if (cache is not null && !ImageOpener.IsValidCacheMode(cache))
        {
            throw new CliException($"Invalid source cache option: {cache}");
        }
        bool repair = mode != RepairMode.None;
        if (repair && forceShare)
        {
            throw new CliException($"Could not open '{fileName}': {ImageOpener.ForceShareNeedsReadOnly}");
        }

        var options = ImageOpener.Options(readOnly: !repair, l2CacheSize, forceShare) with { SkipCheckOnOpen = true };
        using var device = ImageOpener.Open(fileName, format, options);
        var imageFormat = ImageFormats.Of(device);
        if (!imageFormat.CanCheck)
        {
            context.Error("This image format does not support checks");
            return NotSupportedExitCode;
        }

        CheckResult result;
        try
        {
            result = imageFormat.Check(device, mode);
            if (result.CorruptionsFixed != 0 || result.LeaksFixed != 0)
            {
                if (output == "human" && !quiet)
                {
                    CheckReportWriter.WriteRepairSummary(context.Out, result);
                }
                // Report what is left, with the repair's counts (qemu-img's JSON shows them next to the second check).
                var repaired = result;
                result = imageFormat.Check(device, RepairMode.None) with { CorruptionsFixed = repaired.CorruptionsFixed, LeaksFixed = repaired.LeaksFixed };
            }
        }
        catch (IOException e)
        {
            return context.Error($"Check failed: {Program.Describe(e)}");
        }

        if (!quiet)
        {
            if (output == "json")
            {
                CheckReportWriter.WriteJson(context.Out, fileName, device.FormatName, result);
            }
            else
            {
                CheckReportWriter.WriteHuman(context.Out, result);
            }
        }
        if (result.CheckErrors != 0)
        {
            return context.Error(result.FirstError is null ? "Check failed" : $"Check failed: {result.FirstError}");
        }
        return CheckReportWriter.ExitCode(result);
    }

    private static RepairMode ParseRepairMode(string value) => value switch
    {
        // qemu-img's QED driver repairs everything it can for either mode (QED-FORMAT.md §8.3); so do we, for parity.
        "leaks" => RepairMode.All,
        "all" => RepairMode.All,
        _ => throw new UsageException($"Unknown option value for -r (expecting 'leaks' or 'all'): {value}"),
    };
}
