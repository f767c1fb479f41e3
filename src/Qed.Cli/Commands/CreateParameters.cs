using System.Globalization;
using System.Text;
using Qed.Cli.CommandLine;
using Qed.Format;
using Qed.Image;

namespace Qed.Cli.Commands;

/// <summary>The creation options of one image (from <c>-o</c>, <c>-b</c>, <c>-F</c> and the size argument), checked as qemu-img checks them.</summary>
internal sealed class CreateParameters
{
    private static readonly string[] s_qedKeys = ["size", "backing_file", "backing_fmt", "cluster_size", "table_size"];
    private static readonly string[] s_rawKeys = ["size"];

    private CreateParameters(string format)
    {
        Format = format;
    }

    /// <summary><c>qed</c> or <c>raw</c>.</summary>
    public string Format { get; }

    /// <summary>The size as given (before rounding to 512), or null.</summary>
    public long? Size { get; set; }

    /// <summary>True when <c>-o size=</c> gave the size.</summary>
    public bool SizeFromOptions { get; private set; }

    /// <summary>The backing file name, stored verbatim.</summary>
    public string? BackingFile { get; set; }

    /// <summary>The backing file's format.</summary>
    public string? BackingFormat { get; set; }

    /// <summary>The cluster size given, or null for the default.</summary>
    public long? ClusterSize { get; private set; }

    /// <summary>The table size given, or null for the default.</summary>
    public long? TableSize { get; private set; }

    /// <summary>Checks the <c>-o</c> keys and values for <paramref name="format"/>; errors name <paramref name="fileName"/> first, like qemu-img's.</summary>
    /// <exception cref="CliException">Unknown key or a value that is not a size.</exception>
    public static CreateParameters FromOptions(string format, ImageOptionList options, string fileName)
    {
        var parameters = new CreateParameters(format);
        string[] known = format == "qed" ? s_qedKeys : s_rawKeys;
        foreach (var (key, _) in options.Entries)
        {
            if (Array.IndexOf(known, key) < 0)
            {
                throw new CliException($"{fileName}: Invalid parameter '{key}'");
            }
        }
        if (options.Get("size") is { } size)
        {
            parameters.Size = ParseSizeValue("size", size, fileName);
            parameters.SizeFromOptions = true;
        }
        if (options.Get("cluster_size") is { } clusterSize)
        {
            parameters.ClusterSize = ParseSizeValue("cluster_size", clusterSize, fileName);
        }
        if (options.Get("table_size") is { } tableSize)
        {
            parameters.TableSize = ParseSizeValue("table_size", tableSize, fileName);
        }
        parameters.BackingFile = options.Get("backing_file");
        parameters.BackingFormat = options.Get("backing_fmt");
        return parameters;
    }

    /// <summary>The help printed for <c>-o help</c>.</summary>
    public static string OptionHelp(string format)
    {
        var text = new StringBuilder();
        text.Append("Supported ").Append(format).Append(" options:\n");
        if (format == "qed")
        {
            text.Append("  backing_file=<str>     - File name of a base image\n");
            text.Append("  backing_fmt=<str>      - Image format of the base image\n");
            text.Append("  cluster_size=<size>    - Cluster size (in bytes)\n");
        }
        text.Append("  size=<size>            - Virtual disk size\n");
        if (format == "qed")
        {
            text.Append("  table_size=<size>      - L1/L2 table size (in clusters)\n");
        }
        return text.ToString();
    }

    /// <summary>qemu-img's announcement, e.g. <c>Formatting 'a.qed', fmt=qed size=1048576 cluster_size=65536</c>.</summary>
    public string FormattingLine(string fileName)
    {
        var line = new StringBuilder();
        line.Append(CultureInfo.InvariantCulture, $"Formatting '{fileName}', fmt={Format} size={Size ?? 0}");
        if (Format == "qed")
        {
            if (BackingFile is not null)
            {
                line.Append(" backing_file=").Append(BackingFile);
            }
            if (BackingFormat is not null)
            {
                line.Append(" backing_fmt=").Append(BackingFormat);
            }
            line.Append(CultureInfo.InvariantCulture, $" cluster_size={ClusterSize ?? QedGeometry.DefaultClusterSize}");
            if (TableSize is { } tableSize)
            {
                line.Append(CultureInfo.InvariantCulture, $" table_size={tableSize}");
            }
        }
        return line.ToString();
    }

    /// <summary>The engine's creation options.</summary>
    /// <exception cref="QedFormatException">A geometry value QED does not allow (the engine's check and message, also for values beyond <see cref="int"/>).</exception>
    public QedCreateOptions ToQedOptions()
    {
        long clusterSize = ClusterSize ?? QedGeometry.DefaultClusterSize;
        long tableSize = TableSize ?? QedGeometry.DefaultTableSize;
        QedCreator.CheckGeometry(clusterSize, tableSize);
        return new QedCreateOptions
        {
            Size = Size ?? 0,
            ClusterSize = (int)clusterSize,
            TableSize = (int)tableSize,
            BackingFile = BackingFile,
            BackingFormat = BackingFile is null ? null : BackingFormat,
        };
    }

    /// <summary>A size in <c>-o</c>, with the messages of QEMU's option parser (which differ from qemu-img's own size options).</summary>
    private static long ParseSizeValue(string key, string value, string fileName) =>
        SizeParser.TryParse(value, out long size, out var error)
            ? size
            : throw new CliException(error == SizeParseError.TooLarge
                ? $"{fileName}: Value '{value}' is out of range for parameter '{key}'"
                : $"{fileName}: Parameter '{key}' expects a non-negative number below 2^64");
}
