using Qed.Check;
using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Check;
using Qed.Formats;
using Qed.Formats.Qcow2;

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
/// decides the exit code, as in qemu-img. <c>-r leaks</c> only reclaims leaked clusters at the end of the file (and only
/// while no corruption remains); <c>-r all</c> also zeroes invalid table entries. qemu-img's QED driver does the latter
/// for either mode (QED-FORMAT.md §8.3); we keep to what qemu-img documents for the two modes.
/// qcow2 images are checked read-only only (QCOW2.md §13): <c>-r</c> is refused before any writable open, the backing
/// chain is not opened (the check never reads it; qemu-img hangs on loops), and what the check finds besides its counters
/// is printed on stderr line by line as qemu-img prints it; a check that cannot finish prints no report, only
/// <c>Check failed: REASON</c> (exit 1).
/// </remarks>
internal static class CheckCommand
{
    /// <summary>qemu-img's exit status for a format that has no consistency check.</summary>
    public const int NotSupportedExitCode = 63;

    private static readonly CliOption<RepairMode> s_repair = new('r', "repair", "leaks|all",
        "repair: 'leaks' reclaims leaked clusters at the end of the file (only while no corruption remains); 'all' also zeroes invalid table entries",
        ParseRepairMode);

    // qemu-img checks -T after the operands and --output, so it comes after --output here (CheckLater runs in table order).
    private static readonly CliOption<string> s_cache = CommonOptions.CacheMode('T', null,
        "the source cache mode (accepted for compatibility; qed reads through the page cache)",
        mode => $"Invalid source cache option: {mode}", checkLater: true);

    /// <summary>The options of <c>qed check</c>.</summary>
    public static OptionTable Options { get; } = new("check", "FILE",
        """
        Check the metadata of a QED or qcow2 image. Without -r nothing on disk changes.
        -r leaks reclaims leaked clusters at the end of a QED file; -r all also zeroes
        invalid table entries. After a repair the image is checked again. qcow2 images
        are checked read-only (-r is refused) and without their backing files.
        Exit status: 0 clean, 1 check failed, 2 corruptions, 3 only leaks,
        63 format without checks (raw).
        """,
        CommonOptions.Help, CommonOptions.Format, s_repair, CommonOptions.Output, CommonOptions.Quiet, s_cache,
        CommonOptions.ForceShare, CommonOptions.L2CacheSize);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = Options.Parse(args);
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        string? format = parsed.Get(CommonOptions.Format);
        string output = parsed.Get(CommonOptions.Output, "human");
        var mode = parsed.Get(s_repair, RepairMode.None);
        bool quiet = parsed.Has(CommonOptions.Quiet);
        bool forceShare = parsed.Has(CommonOptions.ForceShare);
        long? l2CacheSize = parsed.GetValue(CommonOptions.L2CacheSize);
        string fileName = parsed.SingleImage();
        parsed.CheckLater();
        bool repair = mode != RepairMode.None;
        if (repair && forceShare)
        {
            throw new CliException($"Could not open '{fileName}': {ImageOpener.ForceShareNeedsReadOnly}");
        }

        // qcow2 is checked read-only and without its backing chain (the check never reads it, and QEMU hangs on loops).
        bool qcow2 = TargetFormat(fileName, format) == ImageFormats.Qcow2;
        if (repair && qcow2)
        {
            return context.Error(Qcow2RepairRefused);
        }

        var options = ImageOpener.Options(readOnly: !repair, l2CacheSize, forceShare) with { SkipCheckOnOpen = true, NoBacking = qcow2 };
        using var device = ImageOpener.Open(fileName, format, options);
        var imageFormat = ImageFormats.Of(device);
        if (!imageFormat.CanCheck)
        {
            context.Error("This image format does not support checks");
            return NotSupportedExitCode;
        }

        CheckResult result;
        var messages = new CheckMessageWriter(context.Err);
        try
        {
            // qcow2 hands its messages over as it finds them (there can be millions); other formats collect theirs.
            result = imageFormat is Qcow2Format qcow2Format ? qcow2Format.Check(device, messages.Write) : imageFormat.Check(device, mode);
            messages.WriteAll(result.Messages);
            messages.Flush();
            if (result.AbortReason is { } reason)
            {
                // The check could not finish: qemu-img prints no report.
                return context.Error($"Check failed: {reason}");
            }
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
            messages.Flush();
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

    /// <summary>The refusal of <c>-r</c> on a qcow2 image, printed before anything is opened for writing.</summary>
    internal const string Qcow2RepairRefused = "qcow2 images cannot be repaired (repair not supported); run the check without -r";

    /// <summary>The format the check will open: the one <c>-f</c> names, else the probed one; null when the file cannot be probed (the open then reports why).</summary>
    private static ImageFormat? TargetFormat(string fileName, string? format)
    {
        if (format is not null)
        {
            return ImageFormats.Find(format);
        }
        try
        {
            return File.Exists(fileName) ? ImageFormats.Probe(fileName) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The modes as qemu-img documents them: <c>leaks</c> repairs only leaks, <c>all</c> everything.</summary>
    /// <remarks>qemu-img's QED driver ignores the difference and fixes corruptions for <c>-r leaks</c> too (QED-FORMAT.md §8.3); we do what the option says.</remarks>
    private static RepairMode ParseRepairMode(string value) => value switch
    {
        "leaks" => RepairMode.Leaks,
        "all" => RepairMode.All,
        _ => throw new UsageException($"Unknown option value for -r (expecting 'leaks' or 'all'): {value}"),
    };
}
