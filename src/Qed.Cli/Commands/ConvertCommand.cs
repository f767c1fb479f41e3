using System.Numerics;
using Qed.Backing;
using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Convert;
using Qed.Cli.Output;
using Qed.Copy;
using Qed.Formats;
using Qed.Formats.Qcow2;
using Qed.Formats.Qcow2.Writer;
using Qed.Image;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed convert [-f FMT] [-O qed|qcow2|raw] [-o OPTIONS] [-B BACKING -F FMT] [-n [--target-is-zero]] [-S SIZE] [-m N] [-W] [-p] [-q] [-T CACHE] [-t CACHE] [-U] [-C] [--l2-cache-size=SIZE] SOURCE DESTINATION</c>:
/// writes the disk SOURCE shows (its backing chain merged in) to a new image, leaving zero areas unallocated (QED, qcow2) or
/// as holes (raw); with <c>-B</c> as an overlay of BACKING holding only what differs from it; with <c>-c</c> (qcow2)
/// compressed; with <c>-n</c> into an existing image.
/// </summary>
/// <remarks>
/// The source is opened and the output options are checked before the destination is touched. A new output is written to
/// a hidden new file beside the destination and renamed over it once complete and flushed, so a failure or a kill never
/// leaves a partial image under the destination's name and never loses the file that was there (qemu-img truncates it
/// first and leaves a partial output behind); <see cref="ConvertDestination"/> explains the steps. Devices, and the
/// existing image of <c>-n</c>, are written in place, as qemu-img writes them.
/// </remarks>
internal static class ConvertCommand
{
    private const int RawGranule = 4096;
    private const long DefaultL2CacheSize = 1024 * 1024;
    private const int DefaultWriters = 8;
    private const long MaxSparseSize = 16 * 1024 * 1024;
    private const int SectorSize = 512;

    // Convert walks the source and writes the target in disk order, so each table slice is needed only for a moment.
    private static readonly CliOption<long> s_l2CacheSize = CommonOptions.L2CacheSizeWithDefault("1M");

    private static readonly CliOption<string> s_outputFormat = new('O', null, "qed|qcow2|raw", "the format to write (default raw)", v => v);
    private static readonly CliFlag s_progress = new('p', null, "show progress");

    // Both cache modes are checked once the operands are known, as qemu-img does; qed accepts them and uses the page cache.
    private static readonly CliOption<string> s_cache = CommonOptions.CacheMode('t', null,
        "the destination cache mode (accepted for compatibility)", mode => $"Invalid cache option: {mode}", checkLater: true);
    private static readonly CliOption<string> s_sourceCache = CommonOptions.CacheMode('T', null,
        "the source cache mode (accepted for compatibility)", mode => $"Invalid source cache option: {mode}", checkLater: true);

    private static readonly CliOption<string> s_backing = new('B', null, "BACKING",
        "write an overlay of BACKING (qed), holding only what differs from it", v => v);
    private static readonly CliOption<string> s_backingFormat = new('F', null, "FMT", "the format of BACKING (required with -B)", v => v);
    private static readonly CliFlag s_skipCreate = new('n', null, "write into the existing DESTINATION (opened as -O's format)");
    private static readonly CliFlag s_targetIsZero = new('\0', "target-is-zero", "with -n: DESTINATION reads as zeros, so zeros are not written");
    private static readonly CliOption<long> s_sparseSize = new('S', null, "SIZE",
        "shortest run of zeros left unwritten (default 4k; 0 writes everything)", ParseSparseSize);
    private static readonly CliOption<int> s_writers = new('m', null, "N", "writes in flight with -W, 1 to 16 (default 8)", ParseWriters);
    private static readonly CliFlag s_outOfOrder = new('W', null, "let the -m writes run concurrently, out of order");
    private static readonly CliFlag s_copyOffload = new('C', null, "copy offloading (accepted; qed copies through memory)");
    private static readonly CliFlag s_compress = new('c', null, "compress the clusters (qcow2 only; -o compression_type=zlib|zstd)");

    /// <summary>The options of <c>qed convert</c>.</summary>
    public static OptionTable Options { get; } = new("convert", "SOURCE DESTINATION",
        """
        Copy the disk seen through SOURCE and its backing chain into a new,
        sparse image (standalone, or an overlay of BACKING), or into an existing one.
        """,
        CommonOptions.Help, CommonOptions.FormatLetter, s_outputFormat, CreateCommand.ImageOptions, s_backing, s_backingFormat,
        s_skipCreate, s_targetIsZero, s_sparseSize, s_writers, s_outOfOrder, s_progress, CommonOptions.Quiet,
        s_sourceCache, s_cache, CommonOptions.ForceShare, s_copyOffload, s_compress, s_l2CacheSize);

    /// <summary>What to write and how, from the options.</summary>
    private sealed record CopySettings(long? SparseSize, int Writers, bool OutOfOrder, bool TargetIsZero);

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
        bool skipCreate = parsed.Has(s_skipCreate);
        bool compress = parsed.Has(s_compress);
        long? l2CacheSize = parsed.GetValue(s_l2CacheSize);
        var optionArguments = parsed.All(CreateCommand.ImageOptions);
        var settings = new CopySettings(parsed.GetValue(s_sparseSize), parsed.GetValue(s_writers) ?? DefaultWriters,
            parsed.Has(s_outOfOrder), parsed.Has(s_targetIsZero));

        // qemu-img's checks of the option combinations, in its order.
        if (parsed.Has(s_copyOffload) && compress)
        {
            throw new CliException("Cannot enable copy offloading when -c is used");
        }
        if (parsed.Has(s_copyOffload) && settings.SparseSize is not null)
        {
            throw new CliException("Cannot enable copy offloading when -S is used");
        }
        if (settings.TargetIsZero && !skipCreate)
        {
            throw new CliException("--target-is-zero requires use of -n flag");
        }
        if (skipCreate && optionArguments.Count > 0)
        {
            throw new CliException("-o has no effect when skipping image creation");
        }

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
        var reporter = new ProgressReporter(progress && !quiet ? context.Out : null);
        if (skipCreate)
        {
            // qemu-img ignores -B and -F when it does not create the target; so do we.
            return ConvertIntoExisting(sourceName, sourceFormat, targetName, format, settings, compress, forceShare, l2CacheSize, reporter);
        }

        var parameters = CreateParameters.FromOptions(format, optionList, targetName);
        // -B and -F win over -o backing_file and backing_fmt, which otherwise ask for the same overlay.
        parameters.BackingFile = parsed.Get(s_backing) ?? parameters.BackingFile;
        parameters.BackingFormat = parsed.Get(s_backingFormat) ?? parameters.BackingFormat;
        if (parameters.BackingFile is not null)
        {
            CheckBacking(parameters, targetName);
        }
        else
        {
            // -F alone names the format of nothing: qemu-img ignores it.
            parameters.BackingFormat = null;
        }
        if (compress && format != ImageFormats.Qcow2)
        {
            throw new CliException("Compression not supported for this file format");
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
        if (parameters.BackingFile is not null)
        {
            OpenBackingFirst(parameters, targetName, l2CacheSize);
        }

        using var destination = ConvertDestination.Prepare(targetName, format, size);
        try
        {
            var target = CreateTarget(destination, format, createOptions, compress, l2CacheSize, out int clusterSize);
            try
            {
                reporter.Start();
                // A device keeps its old bytes where the sparse copy writes nothing (qemu-img zeroes them too); an overlay reads its backing file.
                var content = destination.InPlace ? TargetContent.Unknown : target.Backing is null ? TargetContent.Zeros : TargetContent.Baseline;
                Copier(source, target, size, clusterSize, settings, content).Copy(reporter.Report);
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

    /// <summary><c>-n</c>: copies into the existing <paramref name="targetName"/>, opened as <paramref name="format"/>, in place (qemu-img's way; the file is the user's and stays where it is).</summary>
    private static int ConvertIntoExisting(string sourceName, string? sourceFormat, string targetName, ImageFormat format, CopySettings settings,
        bool compress, bool forceShare, long? l2CacheSize, ProgressReporter reporter)
    {
        var sourceOptions = ImageOpener.Options(readOnly: true, l2CacheSize, forceShare) with { ExcludeWriters = true };
        using var source = ImageOpener.Open(sourceName, sourceFormat, sourceOptions);
        RefuseOverwritingSource(source, targetName);
        long size = ImageOpener.VirtualSize(source);
        using var target = ImageOpener.Open(targetName, format.Name, ImageOpener.Options(readOnly: false, l2CacheSize));
        if (target.Size < size)
        {
            throw new CliException("output file is smaller than input file");
        }
        if (compress)
        {
            throw new CliException("Compression not supported for this file format");
        }
        int clusterSize = ImageFormats.Of(target).Describe(target).ClusterSize ?? RawGranule;
        reporter.Start();
        // Without --target-is-zero the target's old bytes (or its backing file's) are zeroed wherever the source reads zeros.
        var content = settings.TargetIsZero ? TargetContent.Zeros : TargetContent.Unknown;
        Copier(source, target, size, clusterSize, settings, content).Copy(reporter.Report);
        target.Flush();
        reporter.Finish();
        return 0;
    }

    /// <summary>
    /// The copier for the options. The zero-detection granule is <c>-S</c> (4 KiB by default) rounded down to a power of
    /// two, so zero and data runs change at aligned offsets as qemu-img's do (it aligns them to the power of two below
    /// <c>-S</c>), and up to whole clusters of a QED target (a cluster is allocated whole, so testing less than one for
    /// zeros would not save space). A compressing target tests each cluster on its own whatever <c>-S</c> says, as
    /// qemu-img does (it compresses cluster by cluster).
    /// </summary>
    private static SparseCopier Copier(BlockDevice source, BlockDevice target, long size, int clusterSize, CopySettings settings, TargetContent content)
    {
        long sparse = settings.SparseSize ?? RawGranule;
        bool hasClusters = target.FormatName != ImageFormats.Raw.Name;
        long granule = sparse == 0 || target is Qcow2TargetImage { Compresses: true } ? clusterSize : (long)BitOperations.RoundUpToPowerOf2((ulong)sparse + 1) / 2;
        if (hasClusters)
        {
            granule = (granule + clusterSize - 1) / clusterSize * clusterSize;
        }
        return new SparseCopier(source, target, size, (int)Math.Min(granule, MaxSparseSize))
        {
            TargetContent = content,
            Baseline = content == TargetContent.Baseline ? target.Backing : null,
            WriteEverything = sparse == 0,
            // In disk order the writes take turns anyway: one writer was faster and smaller (1 GiB of random data into QED on
            // tmpfs: 0.46 s and 21 MiB against 0.53 s and 38 MiB with 8), so -m counts only with -W, as the help says.
            Writers = settings.OutOfOrder ? settings.Writers : 1,
            OutOfOrder = settings.OutOfOrder,
        };
    }

    /// <summary>qemu-img's rules for the backing file of its output: a format that has backing files, and an explicit backing format.</summary>
    private static void CheckBacking(CreateParameters parameters, string targetName)
    {
        if (!parameters.Format.SupportsBackingFile)
        {
            throw new CliException($"Backing file not supported for file format '{parameters.Format.Name}'");
        }
        if (parameters.BackingFormat is null)
        {
            throw new CliException("Use of backing file requires explicit backing format");
        }
        if (parameters.BackingFile!.Length == 0)
        {
            throw new CliException($"{targetName}: Expected backing file name, got empty string");
        }
        string backingPath = BackingChain.Resolve(targetName, parameters.BackingFile);
        if (string.Equals(Path.GetFullPath(ConvertDestination.FinalPath(backingPath)), Path.GetFullPath(ConvertDestination.FinalPath(targetName)), StringComparison.Ordinal))
        {
            throw new CliException($"{targetName}: Error: Trying to create an image with the same filename as the backing file");
        }
    }

    /// <summary>
    /// Opens BACKING (as the new overlay will, relative to its directory) before anything is created, so a missing or
    /// unreadable one fails with qemu-img's words and leaves nothing behind (qemu-img leaves the new, unopenable image).
    /// </summary>
    private static void OpenBackingFirst(CreateParameters parameters, string targetName, long? l2CacheSize)
    {
        string backingPath = BackingChain.Resolve(targetName, parameters.BackingFile!);
        try
        {
            ImageOpener.Open(backingPath, parameters.BackingFormat, ImageOpener.Options(readOnly: true, l2CacheSize)).Dispose();
        }
        catch (CliException e)
        {
            throw new CliException($"Could not open '{targetName}': Could not open backing file: {e.Message}", e);
        }
    }

    /// <summary>Reads <c>-S</c>: a size (qemu's cvtnum words), then a multiple of 512 up to 16 MiB, as qemu-img allows.</summary>
    private static long ParseSparseSize(string text)
    {
        long value = SizeParser.ParseArgument(text, "buffer size for sparse output");
        if (value % SectorSize != 0 || value > MaxSparseSize)
        {
            throw new CliException($"Invalid buffer size for sparse output specified. Valid sizes are multiples of {SectorSize} up to {MaxSparseSize}. Select 0 to disable sparse detection (fully allocates output).");
        }
        return value;
    }

    /// <summary>Reads <c>-m</c> as qemu-img does (C's strtol, base 0): 1 to 16.</summary>
    private static int ParseWriters(string text) =>
        CNumber.TryParseSigned(text, 1, SparseCopier.MaxWriters, out long value)
            ? (int)value
            : throw new CliException($"Invalid number of coroutines. Allowed number of coroutines is between 1 and {SparseCopier.MaxWriters}");

    /// <summary>
    /// Creates the empty output in the destination's file and opens it for writing (a device is written in place as raw),
    /// with the unit the copy should test for zeros: the cluster (the subcluster of a qcow2 image with extended L2 entries),
    /// 4 KiB for raw. A qcow2 output is a write-once image that opens its backing file itself.
    /// </summary>
    private static BlockDevice CreateTarget(ConvertDestination destination, ImageFormat format, ImageCreateOptions createOptions, bool compress, long? l2CacheSize, out int clusterSize)
    {
        string path = destination.WritePath;
        BlockDevice target;
        if (destination.InPlace)
        {
            // Only raw output reaches a device (ConvertDestination refuses formats that grow their file).
            long size = createOptions.Size;
            target = new RawImage(new DeviceFileAccessor(HandleFileAccessor.Open(path, readOnly: false), size));
        }
        else if (format == ImageFormats.Qcow2)
        {
            var qcow2 = WithTargetErrors(destination.Name, format.Name, () => CreateQcow2Target(destination, createOptions, compress, l2CacheSize));
            clusterSize = (int)qcow2.AllocationUnit;
            return qcow2;
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
        clusterSize = ImageFormats.Of(target).Describe(target).ClusterSize ?? RawGranule;
        return target;
    }

    /// <summary>The write-once qcow2 output, over its backing file (opened from the destination's directory, as QEMU will open it) when it has one.</summary>
    private static Qcow2TargetImage CreateQcow2Target(ConvertDestination destination, ImageCreateOptions createOptions, bool compress, long? l2CacheSize)
    {
        BlockDevice? backing = null;
        if (createOptions.BackingFile is { } backingFile)
        {
            string backingPath = BackingChain.Resolve(destination.Name, backingFile);
            backing = ImageOpener.Open(backingPath, createOptions.BackingFormat, ImageOpener.Options(readOnly: true, l2CacheSize));
        }
        try
        {
            return Qcow2Format.CreateTarget(destination.WritePath, createOptions, backing, compress);
        }
        catch
        {
            backing?.Dispose();
            throw;
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
