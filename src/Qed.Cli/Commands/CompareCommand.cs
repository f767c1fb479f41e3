using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Compare;
using Qed.Cli.Output;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed compare [-f FMT] [-F FMT] [-T CACHE] [-p] [-q] [-s] [-U] [--l2-cache-size=SIZE] FILE1 FILE2</c>: qemu-img
/// compare, whether two images (backing chains included) show the same disk.
/// </summary>
/// <remarks>
/// Messages, their order and the exit statuses are qemu-img 7.2's: 0 identical, 1 different, 2 an image could not be
/// opened, 3 its allocation could not be read, 4 its data could not be read; a command-line mistake is 1, as for every
/// command. Ranges that both extent maps show as zeros are never read (<see cref="ImageComparer"/>). Where qemu-img
/// differs: strict mode compares allocation without qemu's end-of-file flag, so two images allocated alike are not
/// reported different because one's run of clusters happens to reach the end of the image and the other's does not.
/// </remarks>
internal static class CompareCommand
{
    private static readonly CliOption<string> s_secondFormat = new('F', null, "FMT", "the second image's format (qed or raw); probed when not given", v => v);
    private static readonly CliOption<string> s_cache = CommonOptions.CacheMode('T', null,
        "the images' cache mode (accepted for compatibility)", mode => $"Invalid source cache option: {mode}", checkLater: true);
    private static readonly CliFlag s_progress = new('p', null, "show progress");
    private static readonly CliFlag s_strict = new('s', null, "strict: the sizes and the allocation must match too");

    /// <summary>The options of <c>qed compare</c>.</summary>
    public static OptionTable Options { get; } = new("compare", "FILE1 FILE2",
        """
        Check whether two images show the same disk; a longer image must read as
        zeros past the end of the shorter one. Exit status 0: identical, 1: different.
        """,
        CommonOptions.Help, CommonOptions.FormatLetter, s_secondFormat, s_cache, s_progress, CommonOptions.Quiet, s_strict,
        CommonOptions.ForceShare, CommonOptions.L2CacheSize);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = Options.Parse(args);
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        bool quiet = parsed.Has(CommonOptions.Quiet);
        // As in qemu-img, -q silences the progress too.
        bool progress = parsed.Has(s_progress) && !quiet;
        bool strict = parsed.Has(s_strict);
        if (parsed.Positionals.Count != 2)
        {
            throw new UsageException("Expecting two image file names");
        }
        string firstName = parsed.Positionals[0];
        string secondName = parsed.Positionals[1];
        try
        {
            parsed.CheckLater();
            long? l2CacheSize = parsed.GetValue(CommonOptions.L2CacheSize);
            bool forceShare = parsed.Has(CommonOptions.ForceShare);
            using var first = ImageOpener.Open(firstName, parsed.Get(CommonOptions.FormatLetter), readOnly: true, l2CacheSize: l2CacheSize, forceShare: forceShare);
            using var second = ImageOpener.Open(secondName, parsed.Get(s_secondFormat), readOnly: true, l2CacheSize: l2CacheSize, forceShare: forceShare);
            return Compare(context, first, firstName, second, secondName, strict, quiet, progress);
        }
        catch (CompareFailure e)
        {
            return Fail(context, e, e.ExitCode);
        }
        catch (Exception e) when (e is not UsageException && Program.IsReportable(e))
        {
            return Fail(context, e, CompareFailure.OpenFailed);
        }
    }

    private static int Compare(CommandContext context, BlockDevice first, string firstName, BlockDevice second, string secondName, bool strict, bool quiet, bool progress)
    {
        var comparer = new ImageComparer(first, firstName, ImageOpener.VirtualSize(first), second, secondName, ImageOpener.VirtualSize(second));
        var reporter = new ProgressReporter(progress ? context.Out : null);
        void Say(string line)
        {
            if (!quiet)
            {
                context.Out.Write(line + "\n");
            }
        }

        reporter.Start();
        // The end is left to Finish, which prints the 100% line once and ends it.
        var result = comparer.Run(strict, () => Say("Warning: Image size mismatch!"), (done, total) =>
        {
            if (done < total)
            {
                reporter.Report(done, total);
            }
        });
        if (result.Outcome == CompareOutcome.Identical)
        {
            reporter.Finish();
            Say("Images are identical.");
            return 0;
        }
        Say(result.Outcome switch
        {
            CompareOutcome.SizeMismatch => "Strict mode: Image size mismatch!",
            CompareOutcome.StatusMismatch => $"Strict mode: Offset {result.Offset} block status mismatch!",
            _ => $"Content mismatch at offset {result.Offset}!",
        });
        if (progress)
        {
            // qemu-img ends the progress line after the verdict, which overwrote it.
            context.Out.Write('\n');
        }
        return 1;
    }

    private static int Fail(CommandContext context, Exception e, int exitCode)
    {
        context.Error(Program.Describe(e));
        if (Program.LockHint(e) is { } hint)
        {
            context.Err.WriteLine(hint);
        }
        return exitCode;
    }
}
