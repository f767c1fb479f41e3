using System.Globalization;
using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Map;
using Qed.Extents;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed map [-f FMT] [--output=human|json|svg] [--start-offset=OFF] [--max-length=LEN] [-U] FILE</c>: qemu-img map, the
/// allocation of an image through its backing chain, from the library's extent map.
/// </summary>
/// <remarks>
/// JSON lists every extent (start, length, depth in the chain, present, zero, data, and offset in the file of the layer
/// that answers where there is one); human output lists only the data extents with the file that holds them, as
/// qemu-img prints them. Where qemu-img 7.2 aborts (a QED run of 4 GiB or more of one kind inside one L2 table) the map
/// is simply answered. <c>--output=svg</c>, not in qemu-img, draws the same map as a picture (<see cref="SvgMap"/>).
/// </remarks>
internal static class MapCommand
{
    private static readonly CliOption<long> s_startOffset = new('\0', "start-offset", "OFFSET", "map from this guest offset (default 0)",
        v => SizeParser.ParseArgument(v, "start offset"));

    private static readonly CliOption<long> s_maxLength = new('\0', "max-length", "LENGTH", "map at most this many bytes (default: to the end)",
        v => SizeParser.ParseArgument(v, "max length"));

    // qemu-img's --output plus svg; the refusal keeps qemu-img's wording, checked after the operands as qemu-img does.
    private static readonly CliOption<string> s_output = new('\0', "output", "human|json|svg", "the report's format (default human; svg draws a picture)", v => v,
        checkLater: v =>
        {
            if (v is not ("human" or "json" or "svg"))
            {
                throw new CliException("--output must be used with human or json as argument.");
            }
        });

    /// <summary>The options of <c>qed map</c>.</summary>
    public static OptionTable Options { get; } = new("map", "FILE",
        "Show which ranges of an image hold data or read as zeros, and which file of its chain holds them.",
        CommonOptions.Help, CommonOptions.Format, s_output, s_startOffset, s_maxLength, CommonOptions.ForceShare, CommonOptions.L2CacheSize);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = Options.Parse(args);
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        string? format = parsed.Get(CommonOptions.Format);
        string output = parsed.Get(s_output, "human");
        long start = parsed.Get(s_startOffset, 0L);
        long? maxLength = parsed.GetValue(s_maxLength);
        bool forceShare = parsed.Has(CommonOptions.ForceShare);
        long? l2CacheSize = parsed.GetValue(CommonOptions.L2CacheSize);
        string fileName = parsed.SingleImage();
        parsed.CheckLater();

        using var device = ImageOpener.Open(fileName, format, readOnly: true, l2CacheSize: l2CacheSize, forceShare: forceShare);
        long end = device.Size;
        if (maxLength is { } limit && limit < end - start)
        {
            end = start + limit;
        }

        if (output == "svg")
        {
            SvgMap.Write(context.Out, device, ImageOpener.DisplayName(device, fileName), start, Math.Max(start, end));
            return 0;
        }

        bool json = output == "json";
        if (!json)
        {
            context.Out.Write("Offset          Length          Mapped to       File\n");
        }

        int written = 0;
        if (start < end)
        {
            foreach (var extent in ExtentMap.Enumerate(device, start, end - start))
            {
                if (json)
                {
                    WriteJson(context.Out, extent, written == 0);
                    written++;
                }
                else if (extent.IsData && extent.HostOffset < 0)
                {
                    // qemu-img's human map has no way to show data without a place in a file (qcow2 compressed clusters).
                    throw new CliException("File contains external, encrypted or compressed clusters.");
                }
                else if (extent.IsData)
                {
                    var layer = extent.Device;
                    string file = layer.HostFileName != layer.FileName ? layer.HostFileName
                        : ImageOpener.DisplayName(layer, layer == device ? fileName : layer.FileName);
                    context.Out.Write($"{Hex(extent.Offset),-16}{Hex(extent.Length),-16}{Hex(extent.HostOffset),-16}{file}\n");
                }
            }
        }

        if (json)
        {
            if (written == 0)
            {
                // qemu-img prints its empty starting entry when there is nothing to map.
                context.Out.Write($"[{{ \"start\": {start}, \"length\": 0, \"depth\": 0, \"present\": false, \"zero\": false, \"data\": false}}");
            }
            context.Out.Write("]\n");
        }
        return 0;
    }

    private static void WriteJson(TextWriter output, Extent extent, bool first)
    {
        output.Write(first ? "[" : ",\n");
        output.Write(string.Create(CultureInfo.InvariantCulture,
            $"{{ \"start\": {extent.Offset}, \"length\": {extent.Length}, \"depth\": {extent.Depth}, \"present\": {Bool(extent.IsPresent)}, \"zero\": {Bool(extent.ReadsAsZeros)}, \"data\": {Bool(extent.IsData)}"));
        if (extent.HostOffset >= 0)
        {
            output.Write(string.Create(CultureInfo.InvariantCulture, $", \"offset\": {extent.HostOffset}"));
        }
        output.Write('}');
    }

    private static string Bool(bool value) => value ? "true" : "false";

    // C's %#x: 0 stays "0", everything else gets 0x.
    private static string Hex(long value) => value == 0 ? "0" : "0x" + value.ToString("x", CultureInfo.InvariantCulture);
}
