using Qed.Cli.CommandLine;
using Qed.Cli.Conversion;
using Qed.Cli.Output;
using Qed.Image;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed convert [-f FMT] [-O qed|raw] [-o OPTIONS] [-p] [-q] [--l2-cache-size=SIZE] SOURCE DESTINATION</c>: writes the disk SOURCE shows
/// (its backing chain merged in) to a new standalone image, leaving zero areas unallocated (QED) or as holes (raw).
/// </summary>
/// <remarks>
/// The source is opened and the output options are checked before the destination is touched. If the copy fails
/// half-way, the partial destination is deleted (qemu-img leaves it behind).
/// </remarks>
internal static class ConvertCommand
{
    private const int RawGranule = 4096;

    private static readonly GetOpt s_options = new("f:O:o:pqhU",
        new LongOption("help", false, "h"),
        new LongOption("force-share", false, "U"),
        ImageOpener.L2CacheSizeOption);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = s_options.Parse(args);
        string? sourceFormat = null;
        string outputFormat = "raw";
        bool progress = false;
        bool quiet = false;
        bool forceShare = false;
        long? l2CacheSize = null;
        var optionArguments = new List<string>();
        foreach (var option in parsed.Options)
        {
            switch (option.Key)
            {
                case "f": sourceFormat = option.Value; break;
                case "O": outputFormat = option.Value!; break;
                case "o": optionArguments.Add(option.Value!); break;
                case "p": progress = true; break;
                case "q": quiet = true; break;
                case "U": forceShare = true; break;
                case "l2-cache-size": l2CacheSize = ImageOpener.ParseL2CacheSize(option.Value!); break;
                case "h":
                    HelpText.Write(context.Out);
                    return 0;
            }
        }

        ImageOpener.CheckKnownFormat(outputFormat);
        var optionList = ImageOptionList.Parse(optionArguments);
        if (optionList.IsHelpRequest)
        {
            context.Out.Write(CreateParameters.OptionHelp(outputFormat));
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
        string sourceName = parsed.Positionals[0];
        string targetName = parsed.Positionals[1];
        var parameters = CreateParameters.FromOptions(outputFormat, optionList, targetName);
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

        var target = CreateTarget(outputFormat, parameters, targetName, size, l2CacheSize, out int granule);
        bool completed = false;
        try
        {
            var reporter = new ProgressReporter(progress && !quiet ? context.Out : null);
            reporter.Start();
            var copier = new SparseCopier(source, target, size, granule);
            copier.CopyAsync(reporter.Report).GetAwaiter().GetResult();
            target.Flush();
            target.Dispose();
            reporter.Finish();
            completed = true;
        }
        finally
        {
            if (!completed)
            {
                target.Dispose();
                TryDelete(targetName);
            }
        }
        return 0;
    }

    /// <summary>Creates the empty destination (options validated before the file is created) and opens it for writing.</summary>
    private static BlockDevice CreateTarget(string format, CreateParameters parameters, string targetName, long size, long? l2CacheSize, out int granule)
    {
        if (format == "raw")
        {
            granule = RawGranule;
            return WithTargetErrors(targetName, format, () => RawImage.Create(targetName, size));
        }
        parameters.Size = size;
        var options = WithTargetErrors(targetName, format, parameters.ToQedOptions);
        granule = options.ClusterSize;
        WithTargetErrors(targetName, format, () =>
        {
            QedImage.Create(targetName, options);
            return 0;
        });
        try
        {
            return QedImage.Open(targetName, ImageOpener.Options(readOnly: false, l2CacheSize));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(targetName);
            throw new CliException(ImageOpener.CouldNotOpen(targetName, e));
        }
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
            throw new CliException($"{targetName}: error while converting {format}: {Program.Describe(e)}");
        }
    }

    /// <summary>Converting onto the source (or a file of its backing chain) would destroy what is being read.</summary>
    private static void RefuseOverwritingSource(BlockDevice source, string targetName)
    {
        string target = Path.GetFullPath(targetName);
        for (BlockDevice? device = source; device is not null; device = device.Backing)
        {
            if (string.Equals(Path.GetFullPath(device.FileName), target, StringComparison.Ordinal))
            {
                throw new CliException($"{targetName}: the destination is '{device.FileName}', which the source reads from; refusing to overwrite it");
            }
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The copy's own error is the one worth reporting.
        }
    }
}
