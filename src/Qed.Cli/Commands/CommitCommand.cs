using Qed.Backing;
using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Commit;
using Qed.Cli.Output;
using Qed.Image;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed commit [-f FMT] [-t CACHE] [-b BASE] [-d] [-p] [-q] [-r RATE] FILE</c>: qemu-img commit, folding an overlay
/// (and, with <c>-b</c>, every image down to BASE) into its backing file.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>Open the chain read-only, metadata only, to find the base: the top's backing file, or the image <c>-b</c> names
/// (<see cref="BaseLookup"/>). Its errors are qemu-img's.</item>
/// <item>Open it again with the top and the base writable (<see cref="ImageOpenOptions.WritableBackingDepth"/>): the
/// usual locks (a base in use elsewhere is refused with QEMU's lock message) and need-check repair of both.</item>
/// <item>Copy what the layers above the base hold into it, flush it, and, unless <c>-d</c> (which <c>-b</c> implies),
/// empty the top so that it reads everything through to the base (<see cref="ChainCommit"/> gives the order and why a
/// crash loses nothing). qemu-img 7.2 never empties a QED overlay; a QED top emptied here stays check-clean.</item>
/// </list>
/// </remarks>
internal static class CommitCommand
{
    private static readonly CliOption<string> s_cache = CommonOptions.CacheMode('t', null,
        "the cache mode (accepted for compatibility)", mode => $"Invalid cache option: {mode}", checkLater: true);

    private static readonly CliOption<string> s_base = new('b', null, "BASE", "commit into BASE, an image further down the chain (implies -d)", v => v);
    private static readonly CliFlag s_keep = new('d', null, "keep FILE's data (by default FILE is emptied after the commit)");
    private static readonly CliFlag s_progress = new('p', null, "show progress");
    private static readonly CliOption<long> s_rate = new('r', null, "RATE", "write at most RATE bytes per second (0: no limit)",
        v => SizeParser.ParseArgument(v, "rate limit"));

    /// <summary>The options of <c>qed commit</c>.</summary>
    public static OptionTable Options { get; } = new("commit", "FILE",
        """
        Write the data of FILE (and, with -b, of every image down to BASE) into its
        backing file, then empty FILE.
        """,
        CommonOptions.Help, CommonOptions.FormatLetter, s_cache, s_base, s_keep, s_progress, CommonOptions.Quiet, s_rate, CommonOptions.L2CacheSize);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = Options.Parse(args);
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        string? format = parsed.Get(CommonOptions.FormatLetter);
        string? baseName = parsed.Get(s_base);
        bool quiet = parsed.Has(CommonOptions.Quiet);
        // As in qemu-img, -b implies -d, and -q silences -p.
        bool keep = parsed.Has(s_keep) || baseName is not null;
        bool progress = parsed.Has(s_progress) && !quiet;
        long rate = parsed.Get(s_rate, 0L);
        long? l2CacheSize = parsed.GetValue(CommonOptions.L2CacheSize);
        string fileName = parsed.SingleImage();
        parsed.CheckLater();

        // Step 1.
        int depth;
        using (var probe = ImageOpener.Open(fileName, format, ImageOpener.Options(readOnly: true, l2CacheSize) with { MetadataOnly = true }))
        {
            depth = baseName is null ? (probe.Backing is null ? 0 : 1) : BaseLookup.FindDepth(probe, baseName);
        }

        // qemu-img prints the first progress line once the image is open, before it looks for the base, and ends the
        // line before an error that follows.
        var reporter = new ProgressReporter(progress ? context.Out : null);
        if (depth == 0)
        {
            reporter.Start();
            EndProgressLine(context, progress);
            throw new CliException(baseName is null
                ? "Image does not have a backing file"
                : $"Did not find '{baseName}' in the backing chain of '{fileName}'");
        }

        // Step 2.
        using var top = OpenForCommit(fileName, format, depth, l2CacheSize);
        reporter.Start();
        try
        {
            // Step 3.
            ChainCommit.RunAsync(top, depth, makeEmpty: !keep && top is QedImage, reporter.Report, rate, useAsync: false, CancellationToken.None)
                .GetAwaiter().GetResult();
            // Closed before success is claimed: a close that fails (a flush of the chain) is reported instead.
            top.Dispose();
        }
        catch
        {
            EndProgressLine(context, progress);
            throw;
        }
        reporter.Finish();
        if (!quiet)
        {
            context.Out.Write("Image committed.\n");
        }
        return 0;
    }

    private static void EndProgressLine(CommandContext context, bool progress)
    {
        if (progress)
        {
            context.Out.Write('\n');
        }
    }

    /// <summary>Opens the top writable with the layer at <paramref name="depth"/> writable too; the base's lock conflict is reported as qemu-img reports it, without the "backing file" prefix.</summary>
    private static BlockDevice OpenForCommit(string fileName, string? format, int depth, long? l2CacheSize)
    {
        var options = ImageOpener.Options(readOnly: false, l2CacheSize) with { WritableBackingDepth = depth };
        try
        {
            return DiskImage.Open(fileName, format, options);
        }
        catch (QedBackingFileException e) when (e.InnerException is QedLockException locked)
        {
            throw locked;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException(ImageOpener.CouldNotOpen(fileName, e), e);
        }
    }
}
