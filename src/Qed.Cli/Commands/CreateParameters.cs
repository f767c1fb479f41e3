using System.Globalization;
using System.Text;
using Qed.Cli.CommandLine;
using Qed.Formats;

namespace Qed.Cli.Commands;

/// <summary>The creation options of one image (from <c>-o</c>, <c>-b</c>, <c>-F</c> and the size argument), checked as qemu-img checks them against the format's option list.</summary>
internal sealed class CreateParameters
{
    private readonly Dictionary<string, long> _settings = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _textSettings = new(StringComparer.Ordinal);

    private CreateParameters(ImageFormat format)
    {
        Format = format;
    }

    /// <summary>The format of the new image.</summary>
    public ImageFormat Format { get; }

    /// <summary>The size as given (before rounding to 512), or null.</summary>
    public long? Size { get; set; }

    /// <summary>True when <c>-o size=</c> gave the size.</summary>
    public bool SizeFromOptions { get; private set; }

    /// <summary>The backing file name, stored verbatim.</summary>
    public string? BackingFile { get; set; }

    /// <summary>The backing file's format.</summary>
    public string? BackingFormat { get; set; }

    /// <summary>
    /// Checks the <c>-o</c> keys and values for <paramref name="format"/> left to right, as QEMU's option parser does (the
    /// first unknown key or unreadable value wins; a later value replaces an earlier one); errors name
    /// <paramref name="fileName"/> first, like qemu-img's. Sizes, numbers and on/off values are read here; text values are
    /// the format's to judge.
    /// </summary>
    /// <exception cref="CliException">Unknown key, or a value that is not a size, a number or on/off as its option needs.</exception>
    public static CreateParameters FromOptions(ImageFormat format, ImageOptionList options, string fileName)
    {
        var parameters = new CreateParameters(format);
        foreach (var (key, value) in options.Entries)
        {
            var option = format.CreateOptions.FirstOrDefault(o => o.Name == key)
                ?? throw new CliException($"{fileName}: Invalid parameter '{key}'");
            switch (option.Name)
            {
                case ImageCreateOption.SizeName:
                    parameters.Size = ParseSizeValue(option.Name, value, fileName);
                    parameters.SizeFromOptions = true;
                    break;
                case ImageCreateOption.BackingFileName:
                    parameters.BackingFile = value;
                    break;
                case ImageCreateOption.BackingFormatName:
                    parameters.BackingFormat = value;
                    break;
                default:
                    switch (option.Kind)
                    {
                        case ImageCreateOptionKind.Size:
                            parameters._settings[option.Name] = ParseSizeValue(option.Name, value, fileName);
                            break;
                        case ImageCreateOptionKind.Number:
                            // QEMU reads numbers as unsigned 64-bit (-1 wraps) and prints them signed.
                            parameters._settings[option.Name] = CNumber.TryParseUnsigned(value, ulong.MaxValue, out ulong number)
                                ? unchecked((long)number)
                                : throw new CliException($"{fileName}: Parameter '{option.Name}' expects a number");
                            break;
                        case ImageCreateOptionKind.Flag:
                            parameters._textSettings[option.Name] = IsFlagValue(value)
                                ? value
                                : throw new CliException($"{fileName}: Parameter '{option.Name}' expects 'on' or 'off'");
                            break;
                        default:
                            parameters._textSettings[option.Name] = value;
                            break;
                    }
                    break;
            }
        }
        return parameters;
    }

    /// <summary>The spellings of on and off QEMU's option parser accepts (case-sensitive).</summary>
    private static bool IsFlagValue(string value) => value is "on" or "yes" or "true" or "y" or "off" or "no" or "false" or "n";

    /// <summary>The help printed for <c>-o help</c>: the format's options by name, as qemu-img lists them.</summary>
    public static string OptionHelp(ImageFormat format)
    {
        var text = new StringBuilder();
        text.Append("Supported ").Append(format.Name).Append(" options:\n");
        foreach (var option in format.CreateOptions.OrderBy(o => o.Name, StringComparer.Ordinal))
        {
            string kind = option.Kind switch
            {
                ImageCreateOptionKind.Size => "size",
                ImageCreateOptionKind.Number => "num",
                ImageCreateOptionKind.Flag => "bool (on/off)",
                _ => "str",
            };
            string syntax = $"{option.Name}=<{kind}>";
            text.Append(CultureInfo.InvariantCulture, $"  {syntax,-22} - {option.Help}\n");
        }
        return text.ToString();
    }

    /// <summary>qemu-img's announcement, e.g. <c>Formatting 'a.qed', fmt=qed size=1048576 cluster_size=65536</c>: the options in the format's order, given ones and those qemu-img prints a default for.</summary>
    public string FormattingLine(string fileName)
    {
        var line = new StringBuilder();
        line.Append(CultureInfo.InvariantCulture, $"Formatting '{fileName}', fmt={Format.Name}");
        foreach (var option in Format.CreateOptions)
        {
            string? value = option.Name switch
            {
                ImageCreateOption.SizeName => (Size ?? 0).ToString(CultureInfo.InvariantCulture),
                ImageCreateOption.BackingFileName => BackingFile,
                ImageCreateOption.BackingFormatName => BackingFormat,
                _ => _settings.TryGetValue(option.Name, out long given) ? given.ToString(CultureInfo.InvariantCulture)
                    : _textSettings.TryGetValue(option.Name, out string? text) ? text : option.AnnouncedDefault,
            };
            if (value is not null)
            {
                line.Append(' ').Append(option.Name).Append('=').Append(value);
            }
        }
        return line.ToString();
    }

    /// <summary>The library's creation options; the format validates them when it creates the image.</summary>
    public ImageCreateOptions ToCreateOptions() => new()
    {
        Size = Size ?? 0,
        BackingFile = BackingFile,
        // Passed on even without a backing file: qcow2 refuses that combination as qemu-img does; QED ignores it.
        BackingFormat = BackingFormat,
        Settings = new Dictionary<string, long>(_settings, StringComparer.Ordinal),
        TextSettings = new Dictionary<string, string>(_textSettings, StringComparer.Ordinal),
    };

    /// <summary>A size in <c>-o</c>, with the messages of QEMU's option parser (which differ from qemu-img's own size options).</summary>
    private static long ParseSizeValue(string key, string value, string fileName) =>
        SizeParser.TryParse(value, out long size, out var error)
            ? size
            : throw new CliException(error == SizeParseError.TooLarge
                ? $"{fileName}: Value '{value}' is out of range for parameter '{key}'"
                : $"{fileName}: Parameter '{key}' expects a non-negative number below 2^64");
}
