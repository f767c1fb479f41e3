using System.Globalization;
using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Measure;
using Qed.Formats;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed measure [--output=human|json] [-O qed|raw] [-o OPTIONS] (--size SIZE | [-f FMT] [-U] FILE)</c>: qemu-img measure,
/// the size a new image would take on disk, for a blank disk of SIZE bytes or for a copy of FILE's disk
/// (<c>qed convert</c>'s output).
/// </summary>
/// <remarks>
/// qemu-img 7.2 refuses QED targets ("Block driver 'qed' does not support size measurement"); here
/// <see cref="QedMeasurer"/> answers with the exact size <c>qed convert -O qed</c> writes. Raw targets are qemu-img's:
/// the virtual size, rounded up to whole sectors, both when required and fully allocated. The checks run in qemu-img's
/// order so the first mistake gives its message; <c>-o help</c>, which qemu-img 7.2 refuses as an unknown option, lists
/// the format's options as <c>create -o help</c> does.
/// </remarks>
internal static class MeasureCommand
{
    private static readonly CliOption<string> s_outputFormat = new('O', null, "qed|raw", "the format to measure for (default raw)", v => v);

    // qemu-img parses --size with cvtnum inside its getopt loop, so a bad size is refused at once.
    private static readonly CliOption<long> s_size = new('\0', "size", "SIZE", "measure a blank image of SIZE bytes instead of a copy of FILE",
        v => SizeParser.ParseArgument(v, "image size"));

    // qemu-img measure refuses a bad --output inside its getopt loop too, before the operands are looked at.
    private static readonly CliOption<string> s_output = new('\0', "output", "human|json", "the report's format (default human)",
        v => v is "human" or "json" ? v : throw new CliException("--output must be used with human or json as argument."));

    /// <summary>The options of <c>qed measure</c>.</summary>
    public static OptionTable Options { get; } = new("measure", "[FILE]",
        """
        Show the size an image in the -O format takes for a disk of --size bytes,
        or for a copy of FILE's disk (as qed convert writes it).
        """,
        CommonOptions.Help, s_output, s_outputFormat, CreateCommand.ImageOptions, s_size, CommonOptions.FormatLetter,
        CommonOptions.ForceShare, CommonOptions.L2CacheSize);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = Options.Parse(args);
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        bool json = parsed.Get(s_output, "human") == "json";
        string outputFormat = parsed.Get(s_outputFormat, ImageFormats.Raw.Name);
        string? sourceFormat = parsed.Get(CommonOptions.FormatLetter);
        long? size = parsed.GetValue(s_size);
        bool forceShare = parsed.Has(CommonOptions.ForceShare);
        long? l2CacheSize = parsed.GetValue(CommonOptions.L2CacheSize);
        var optionList = ImageOptionList.Parse(parsed.All(CreateCommand.ImageOptions));

        // qemu-img 7.2 refuses "-o help" here ("Invalid parameter 'help'"); listing the options is more useful.
        if (optionList.IsHelpRequest)
        {
            context.Out.Write(CreateParameters.OptionHelp(ImageOpener.CreatableFormat(outputFormat)));
            return 0;
        }

        var positionals = parsed.Positionals;
        if (positionals.Count > 1)
        {
            throw new CliException("At most one filename argument is allowed.");
        }
        string? fileName = positionals.Count == 1 ? positionals[0] : null;
        if (fileName is null && sourceFormat is not null)
        {
            throw new CliException("--image-opts, -f, and -l require a filename argument.");
        }
        if (fileName is not null && size is not null)
        {
            throw new CliException("--size N cannot be used together with a filename.");
        }
        if (fileName is null && size is null)
        {
            throw new CliException("Either --size N or one filename must be specified.");
        }

        BlockDevice? source = null;
        try
        {
            if (fileName is not null)
            {
                source = ImageOpener.Open(fileName, sourceFormat, readOnly: true, l2CacheSize: l2CacheSize, forceShare: forceShare);
                size = ImageOpener.VirtualSize(source);
            }

            var format = ImageOpener.CreatableFormat(outputFormat);
            var options = MeasureOptions(format, optionList, size!.Value);
            var (required, fullyAllocated) = format == ImageFormats.Qed
                ? QedMeasurer.Measure(options, source)
                : RawMeasure(options.Size);

            context.Out.Write(json
                ? string.Create(CultureInfo.InvariantCulture, $"{{\n    \"required\": {required},\n    \"fully-allocated\": {fullyAllocated}\n}}\n")
                : string.Create(CultureInfo.InvariantCulture, $"required size: {required}\nfully allocated size: {fullyAllocated}\n"));
            return 0;
        }
        finally
        {
            source?.Dispose();
        }
    }

    /// <summary>A raw image takes its virtual size, rounded up to whole sectors, whether written or not (qemu-img's answer, 2^63 for the largest size).</summary>
    private static (UInt128 Required, UInt128 FullyAllocated) RawMeasure(long size)
    {
        UInt128 rounded = ((UInt128)size + 511) & ~(UInt128)511;
        return (rounded, rounded);
    }

    /// <summary>
    /// The creation options <c>-o</c> gives, checked against the format's list with qemu-img measure's wording; the size
    /// of <c>--size</c> or FILE replaces a <c>size</c> given with <c>-o</c>, as in qemu-img.
    /// </summary>
    private static ImageCreateOptions MeasureOptions(ImageFormat format, ImageOptionList optionList, long size)
    {
        var settings = new Dictionary<string, long>(StringComparer.Ordinal);
        string? backingFile = null;
        string? backingFormat = null;
        foreach (var (key, value) in optionList.Entries)
        {
            var option = format.CreateOptions.FirstOrDefault(o => o.Name == key)
                ?? throw new CliException($"Invalid parameter '{key}'");
            switch (option.Name)
            {
                case ImageCreateOption.SizeName:
                    ParseSize(key, value);
                    break;
                case ImageCreateOption.BackingFileName:
                    backingFile = value;
                    break;
                case ImageCreateOption.BackingFormatName:
                    backingFormat = value;
                    break;
                default:
                    settings[key] = ParseSize(key, value);
                    break;
            }
        }
        var options = new ImageCreateOptions { Size = size, BackingFile = backingFile, BackingFormat = backingFormat, Settings = settings };
        try
        {
            // Any size is a raw disk (qemu-img measures 2^63 - 1 bytes as 2^63); QED checks the size against its geometry.
            format.Validate(format == ImageFormats.Raw ? options with { Size = 0 } : options);
        }
        catch (QedException e)
        {
            throw new CliException(e.Message, e);
        }
        return options;
    }

    // QEMU's option parser's message (qemu-img adds the suffix list on two more lines).
    private static long ParseSize(string key, string value) =>
        SizeParser.TryParse(value, out long parsed, out var error)
            ? parsed
            : throw new CliException(error == SizeParseError.TooLarge
                ? $"Value '{value}' is out of range for parameter '{key}'"
                : $"Parameter '{key}' expects a non-negative number below 2^64");
}
