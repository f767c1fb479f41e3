using Qed.Backing;
using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Rebase;
using Qed.Cli.Output;
using Qed.Formats;
using Qed.Image;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed rebase [-f FMT] [-u] -b BACKING [-F FMT] [-p] [-q] [-t CACHE] [-T CACHE] [-U] FILE</c>: qemu-img rebase, giving an
/// overlay another backing file (<c>-b ""</c>: none).
/// </summary>
/// <remarks>
/// Safe mode (the default) keeps what the disk reads: it copies into the overlay what the old chain shows and the new
/// backing file does not (<see cref="RebaseCopier"/>), flushes, and only then rewrites the header. <c>-u</c> rewrites
/// only the header. Both write qemu-img's bytes. Unlike qemu-img 7.2, every refusal comes before the first write: a
/// missing <c>-F</c>, a name the header cannot take (unknown compatible features, no room) and a backing chain that
/// leads back to the image (which <c>-u</c> of qemu-img writes) leave the overlay byte for byte as it was, where
/// qemu-img's safe mode has already copied data when it reports them.
/// </remarks>
internal static class RebaseCommand
{
    private static readonly CliFlag s_unsafe = new('u', null, "unsafe: rewrite only the header (the backing file need not exist)");
    private static readonly CliOption<string> s_backing = new('b', null, "BACKING",
        "the new backing file, stored as given (relative to FILE's directory); \"\" for none", v => v);
    private static readonly CliOption<string> s_backingFormat = new('F', null, "BACKING_FMT", "its format (required with a non-empty -b)", v => v);
    private static readonly CliFlag s_progress = new('p', null, "show progress");
    private static readonly CliOption<string> s_cache = CommonOptions.CacheMode('t', null,
        "the image's cache mode (accepted for compatibility)", mode => $"Invalid cache option: {mode}", checkLater: true);
    private static readonly CliOption<string> s_sourceCache = CommonOptions.CacheMode('T', null,
        "the backing files' cache mode (accepted for compatibility)", mode => $"Invalid source cache option: {mode}", checkLater: true);

    /// <summary>The options of <c>qed rebase</c>.</summary>
    public static OptionTable Options { get; } = new("rebase", "FILE",
        """
        Change the backing file of FILE. Without -u the disk reads the same afterwards:
        what the old and new backing files show differently is copied into FILE first.
        """,
        CommonOptions.Help, CommonOptions.FormatLetter, s_unsafe, s_backing, s_backingFormat, s_progress, CommonOptions.Quiet,
        s_cache, s_sourceCache, CommonOptions.ForceShare, CommonOptions.L2CacheSize);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = Options.Parse(args);
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        string? format = parsed.Get(CommonOptions.FormatLetter);
        bool unsafeMode = parsed.Has(s_unsafe);
        string? backing = parsed.Get(s_backing);
        string? backingFormat = parsed.Get(s_backingFormat);
        bool quiet = parsed.Has(CommonOptions.Quiet);
        bool progress = parsed.Has(s_progress) && !quiet;
        bool forceShare = parsed.Has(CommonOptions.ForceShare);
        long? l2CacheSize = parsed.GetValue(CommonOptions.L2CacheSize);
        string fileName = parsed.SingleImage();
        if (!unsafeMode && backing is null)
        {
            throw new UsageException("Must specify backing file (-b) or use unsafe mode (-u)");
        }
        parsed.CheckLater();
        // qemu-img -u without -b removes the backing file.
        backing ??= "";

        var reporter = new ProgressReporter(progress ? context.Out : null);
        reporter.Start();
        // -u does not open the old chain (it may be gone); safe mode reads through it. Write-zeroes must leave zero
        // clusters even in an image that has no backing file yet, since it is about to get one.
        var openOptions = ImageOpener.Options(readOnly: false, l2CacheSize) with { NoBacking = unsafeMode, ZeroClustersWithoutBacking = true };
        using var image = ImageOpener.Open(fileName, format, openOptions);
        BackingChange.CheckFormatName(backingFormat);

        BlockDevice? newBacking = null;
        try
        {
            if (!unsafeMode && backing.Length > 0)
            {
                BackingChange.CheckLoop(fileName, backing, backingFormat);
                newBacking = OpenNewBacking(fileName, backing, backingFormat, l2CacheSize, forceShare);
            }
            BackingChange.RequireFormat(backing, backingFormat);
            BackingChange.CheckImage(image, backing);
            if (unsafeMode)
            {
                BackingChange.CheckLoop(fileName, backing, backingFormat);
            }
            else
            {
                new RebaseCopier(image, newBacking).Copy(reporter.Report);
            }
            BackingChange.Apply(image, backing, backingFormat);
        }
        finally
        {
            newBacking?.Dispose();
        }
        reporter.Finish();
        return 0;
    }

    /// <summary>Opens the new backing file (relative to the overlay's directory) read-only with its chain, as qemu-img words a failure.</summary>
    private static BlockDevice OpenNewBacking(string fileName, string backing, string? backingFormat, long? l2CacheSize, bool forceShare)
    {
        string path = BackingChain.Resolve(fileName, backing);
        try
        {
            return DiskImage.Open(path, backingFormat, ImageOpener.Options(readOnly: true, l2CacheSize, forceShare));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The engine's reason as it words it (qemu-img prints the file layer's "Could not open 'PATH': ..." or the format's reason).
            throw new CliException($"Could not open new backing file '{backing}': {Program.Describe(e)}", e);
        }
    }
}
