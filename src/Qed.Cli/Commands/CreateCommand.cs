using Qed.Backing;
using Qed.Cli.CommandLine;
using Qed.Formats;
using Qed.Image;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed create [-f qed|qcow2|raw] [-o OPTIONS] [-b BACKING [-F FMT]] [-u] [-q] FILE [SIZE]</c>: qemu-img create for QED, qcow2 and raw.
/// </summary>
/// <remarks>
/// Checks run in qemu-img's order so the first mistake gives qemu-img's message. Unlike qemu-img, which creates
/// an empty file before the format driver validates its options, every check here runs before the file is
/// touched: a refused command leaves no file behind and leaves an existing file unchanged. Like qemu-img, an existing file
/// is locked before it is truncated: one that QEMU or qed has open is refused (<c>Failed to get "write" lock</c>) and kept.
/// </remarks>
internal static class CreateCommand
{
    private static readonly CliOption<string> s_format = new('f', null, "qed|qcow2|raw", "the format to create (default raw)", v => v);
    private static readonly CliOption<string> s_backing = new('b', null, "BACKING", "the backing file (qed, qcow2), stored as given; relative names are relative to FILE's directory", v => v);
    private static readonly CliOption<string> s_backingFormat = new('F', null, "BACKING_FMT", "the backing file's format (required with -b)", v => v);
    private static readonly CliFlag s_unsafe = new('u', null, "do not open the backing file (SIZE is then required)");

    /// <summary><c>-o</c> of create and convert: <c>key=value,...</c>, repeatable; <c>-o help</c> lists the keys.</summary>
    internal static CliOption<string> ImageOptions { get; } = new('o', null, "OPTIONS",
        "format options, key=value,... (qed: cluster_size, table_size; qcow2: cluster_size, compat, lazy_refcounts, refcount_bits, extended_l2, compression_type; all: size, backing_file, backing_fmt except raw); -o help lists them",
        v => v) { Repeats = true };

    /// <summary>The options of <c>qed create</c>.</summary>
    public static OptionTable Options { get; } = new("create", "FILE [SIZE]",
        """
        Create a new image. SIZE takes k, M, G, T, P or E suffixes (powers of 1024);
        without SIZE the size of the backing file is used.
        """,
        CommonOptions.Help, s_format, ImageOptions, s_backing, s_backingFormat, s_unsafe, CommonOptions.Quiet);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = Options.Parse(args);
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        string formatName = parsed.Get(s_format, ImageFormats.Raw.Name);
        string? backingFile = parsed.Get(s_backing);
        string? backingFormat = parsed.Get(s_backingFormat);
        bool quiet = parsed.Has(CommonOptions.Quiet);
        bool unsafeBacking = parsed.Has(s_unsafe);
        var optionArguments = parsed.All(ImageOptions);

        var optionList = ImageOptionList.Parse(optionArguments);
        if (optionList.IsHelpRequest)
        {
            context.Out.Write(CreateParameters.OptionHelp(ImageOpener.CreatableFormat(formatName)));
            return 0;
        }

        var positionals = parsed.Positionals;
        if (positionals.Count == 0)
        {
            throw new UsageException("Expecting image file name");
        }
        string fileName = positionals[0];
        long? sizeArgument = positionals.Count > 1 ? SizeParser.ParseArgument(positionals[1], "image size") : null;
        if (positionals.Count > 2)
        {
            throw new UsageException($"Unexpected argument: {positionals[2]}");
        }

        var format = ImageOpener.CreatableFormat(formatName, $"{fileName}: ");
        var parameters = CreateParameters.FromOptions(format, optionList, fileName);
        if (sizeArgument is not null)
        {
            if (parameters.SizeFromOptions)
            {
                throw new CliException($"{fileName}: The image size must be specified only once");
            }
            parameters.Size = sizeArgument;
        }
        if (backingFile is not null)
        {
            parameters.BackingFile = backingFile;
        }
        if (backingFormat is not null)
        {
            parameters.BackingFormat = backingFormat;
        }

        if (parameters.BackingFile is not null)
        {
            CheckBacking(parameters, fileName, unsafeBacking);
        }
        if (parameters.Size is null)
        {
            throw new CliException($"{fileName}: Image creation needs a size parameter");
        }

        if (!quiet)
        {
            context.Out.WriteLine(parameters.FormattingLine(fileName));
        }
        // Everything that can be checked has been; what is left can only fail in the file system (no space, size limits).
        bool existed = File.Exists(fileName);
        try
        {
            var options = parameters.ToCreateOptions();
            format.Create(fileName, options);
            foreach (string warning in format.CompatibilityWarnings(options))
            {
                context.Warning($"{fileName}: {warning}");
            }
        }
        // .NET reports a length the file system refuses (EFBIG) as an ArgumentOutOfRangeException.
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            if (!existed)
            {
                // Nothing half-written stays behind.
                FileCleanup.DeleteQuietly(fileName);
            }
            throw new CliException($"{fileName}: {Program.Describe(e)}", e);
        }
        return 0;
    }

    /// <summary>qemu-img's backing-file rules: a format with backing files, a name, an explicit format, not the image itself, and (without -u) a file that opens, whose size is the default.</summary>
    private static void CheckBacking(CreateParameters parameters, string fileName, bool unsafeBacking)
    {
        string backingFile = parameters.BackingFile!;
        if (!parameters.Format.SupportsBackingFile)
        {
            throw new CliException($"{fileName}: Backing file not supported for file format '{parameters.Format.Name}'");
        }
        if (backingFile.Length == 0)
        {
            throw new CliException($"{fileName}: Expected backing file name, got empty string");
        }
        if (parameters.BackingFormat is null)
        {
            throw new CliException($"{fileName}: Backing file specified without backing format");
        }
        // Relative names are relative to the new image's directory, as they will be when the image is opened.
        string backingPath = BackingChain.Resolve(fileName, backingFile);
        if (string.Equals(Path.GetFullPath(backingPath), Path.GetFullPath(fileName), StringComparison.Ordinal))
        {
            throw new CliException($"{fileName}: Error: Trying to create an image with the same filename as the backing file");
        }
        if (unsafeBacking)
        {
            return;
        }
        try
        {
            // Only its size is read; like qemu-img create, with force-share and no read lock, so a backing file in use by a VM is fine.
            var options = ImageOpener.Options(readOnly: true, l2CacheSize: null, forceShare: true) with { NoBacking = true, MetadataOnly = true };
            using var backing = ImageOpener.Open(backingPath, parameters.BackingFormat, options);
            parameters.Size ??= ImageOpener.VirtualSize(backing);
        }
        catch (CliException e)
        {
            throw new CliException($"{fileName}: {e.Message}");
        }
    }
}
