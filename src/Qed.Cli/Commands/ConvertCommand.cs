using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Convert;
using Qed.Cli.Output;
using Qed.Copy;
using Qed.Formats;
using Qed.Image;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed convert [-f FMT] [-O qed|raw] [-o OPTIONS] [-p] [-q] [-T CACHE] [-t CACHE] [-U] [--l2-cache-size=SIZE] SOURCE DESTINATION</c>: writes the disk SOURCE shows
/// (its backing chain merged in) to a new standalone image, leaving zero areas unallocated (QED) or as holes (raw).
/// </summary>
/// <remarks>
/// The source is opened and the output options are checked before the destination is touched. The output is written to
/// a hidden new file beside the destination and renamed over it once complete and flushed, so a failure or a kill never
/// leaves a partial image under the destination's name and never loses the file that was there (qemu-img truncates it
/// first and leaves a partial output behind); <see cref="ConvertDestination"/> explains the steps. Devices are written in
/// place, as qemu-img writes them.
/// </remarks>
internal static class ConvertCommand
{
    private const int RawGranule = 4096;
    private const long DefaultL2CacheSize = 1024 * 1024;

    // Convert walks the source and writes the target in disk order, so each table slice is needed only for a moment.
    private static readonly CliOption<long> s_l2CacheSize = CommonOptions.L2CacheSizeWithDefault("1M");

    private static readonly CliOption<string> s_outputFormat = new('O', null, "qed|raw", "the format to write (default raw)", v => v);
    private static readonly CliFlag s_progress = new('p', null, "show progress");

    // Both cache modes are checked once the operands are known, as qemu-img does; qed accepts them and uses the page cache.
    private static readonly CliOption<string> s_cache = CommonOptions.CacheMode('t', null,
        "the destination cache mode (accepted for compatibility)", mode => $"Invalid cache option: {mode}", checkLater: true);
    private static readonly CliOption<string> s_sourceCache = CommonOptions.CacheMode('T', null,
        "the source cache mode (accepted for compatibility)", mode => $"Invalid source cache option: {mode}", checkLater: true);

    /// <summary>The options of <c>qed convert</c>.</summary>
    public static OptionTable Options { get; } = new("convert", "SOURCE DESTINATION",
        """
        Copy the disk seen through SOURCE and its backing chain into a new,
        standalone, sparse image.
        """,
        CommonOptions.Help, CommonOptions.FormatLetter, s_outputFormat, CreateCommand.ImageOptions, s_progress, CommonOptions.Quiet,
        s_sourceCache, s_cache, CommonOptions.ForceShare, s_l2CacheSize);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = Options.Parse(args);
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        string? sourceFormat = parsed.Get(CommonOptions.FormatLetter);
        string outputFormat = parsed.Get(s_outputFormat, ImageFormats.Raw.Name);
        bool progress = parsed.Has(s_progress);
        bool quiet = parsed.Has(CommonOptions.Quiet);
        bool forceShare = parsed.Has(CommonOptions.ForceShare);
        long? l2CacheSize = parsed.GetValue(s_l2CacheSize);
        var optionArguments = parsed.All(CreateCommand.ImageOptions);

        // Convert walks the source and writes the target in disk order, so each table slice is needed only for a moment: a
        // small cache does as well as a large one and keeps the memory of a scattered copy low.
        l2CacheSize ??= DefaultL2CacheSize;
        var format = ImageOpener.CreatableFormat(outputFormat);
        var optionList = ImageOptionList.Parse(optionArguments);
        if (optionList.IsHelpRequest)
        {
            context.Out.Write(CreateParameters.OptionHelp(format));
            return 0;
        }
        if (parsed.Positionals.Count < 2)
        {
            throw new CliException("Must specify image file name");
        }
        if (parsed.Positionals.Count > 2)
        {
            throw new UsageException($"Unexpected argument: {parsed.Positionals[2]} (qed converts one source image)");
        }
        parsed.CheckLater();
        string sourceName = parsed.Positionals[0];
        string targetName = parsed.Positionals[1];
        var parameters = CreateParameters.FromOptions(format, optionList, targetName);
        if (parameters.BackingFile is not null)
        {
            throw new CliException($"{targetName}: qed convert writes standalone images; a backing file for the output is not supported");
        }
        if (parameters.Size is not null)
        {
            throw new CliException($"{targetName}: Invalid parameter 'size'");
        }

        // Like qemu-img convert, the source chain refuses writers (raw files too) unless -U shares everything.
        var sourceOptions = ImageOpener.Options(readOnly: true, l2CacheSize, forceShare) with { ExcludeWriters = true };
        using var source = ImageOpener.Open(sourceName, sourceFormat, sourceOptions);
        RefuseOverwritingSource(source, targetName);
        long size = ImageOpener.VirtualSize(source);
        parameters.Size = size;
        var createOptions = parameters.ToCreateOptions();
        WithTargetErrors(targetName, format.Name, () =>
        {
            format.Validate(createOptions);
            return 0;
        });

        using var destination = ConvertDestination.Prepare(targetName, format, size);
        try
        {
            var reporter = new ProgressReporter(progress && !quiet ? context.Out : null);
            var target = CreateTarget(destination, format, createOptions, size, l2CacheSize, out int granule);
            try
            {
                reporter.Start();
                if (destination.InPlace)
                {
                    // A device keeps its old bytes where the sparse copy writes nothing (qemu-img zeroes them too).
                    target.WriteZeroes(0, size);
                }
                new SparseCopier(source, target, size, granule).Copy(reporter.Report);
                target.Flush();
            }
            finally
            {
                target.Dispose();
            }
            destination.Commit();
            reporter.Finish();
        }
        catch (Exception e) when (e is CliException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            // Messages about the hidden file name the destination instead.
            throw new CliException(destination.Reword(Program.Describe(e)), e);
        }
        return 0;
    }

    /// <summary>Creates the empty output in the destination's file and opens it for writing (a device is written in place as raw); the copy's granule is the output's cluster size, if it has one.</summary>
    private static BlockDevice CreateTarget(ConvertDestination destination, ImageFormat format, ImageCreateOptions createOptions, long size, long? l2CacheSize, out int granule)
    {
        string path = destination.WritePath;
        BlockDevice target;
        if (destination.InPlace)
        {
            // Only raw output reaches a device (ConvertDestination refuses formats that grow their file).
            target = new RawImage(new DeviceFileAccessor(HandleFileAccessor.Open(path, readOnly: false), size));
        }
        else
        {
            WithTargetErrors(destination.Name, format.Name, () =>
            {
                format.Create(path, createOptions);
                return 0;
            });
            try
            {
                target = format.Open(path, ImageOpener.Options(readOnly: false, l2CacheSize));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CliException(ImageOpener.CouldNotOpen(path, e));
            }
        }
        granule = ImageFormats.Of(target).Describe(target).ClusterSize ?? RawGranule;
        return target;
    }

    /// <summary>Runs a creation step, wording its failure as qemu-img does: <c>FILE: error while converting FMT: reason</c>.</summary>
    private static T WithTargetErrors<T>(string targetName, string format, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new CliException($"{targetName}: error while converting {format}: {Program.Describe(e)}", e);
        }
    }

    /// <summary>Converting onto the source (or a file of its backing chain) would destroy what is being read.</summary>
    private static void RefuseOverwritingSource(BlockDevice source, string targetName)
    {
        if (targetName.Length == 0)
        {
            return;
        }
        string target = Path.GetFullPath(ConvertDestination.FinalPath(targetName));
        for (BlockDevice? device = source; device is not null; device = device.Backing)
        {
            if (string.Equals(Path.GetFullPath(ConvertDestination.FinalPath(device.FileName)), target, StringComparison.Ordinal))
            {
                throw new CliException($"{targetName}: the destination is '{device.FileName}', which the source reads from; refusing to overwrite it");
            }
        }
    }
}
