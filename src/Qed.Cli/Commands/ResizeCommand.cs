using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Resize;
using Qed.Formats;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed resize [-f FMT] [--preallocation=MODE] [-q] [--shrink] FILE [+|-]SIZE</c>: qemu-img resize, with its syntax,
/// messages and checks in its order.
/// </summary>
/// <remarks>
/// As in qemu-img the size is the last argument, taken before the options are parsed, so <c>-1M</c> is a relative
/// shrink and not an option. Beyond qemu-img: an overlay grows even where its backing file is longer (the new area reads
/// as zeros; qemu-img refuses), and <c>--shrink</c> works on QED (qemu-img refuses): entries past the new end are
/// cleared, clusters left unused at the end of the file are cut off, and the clusters that stay leaked in the middle
/// of the file are reported.
/// </remarks>
internal static class ResizeCommand
{
    private static readonly CliOption<string> s_preallocation = new('\0', "preallocation", "MODE",
        "off (default); falloc or full allocate a raw file's new space (QED: only off)", PreallocationModes.Read);

    private static readonly CliFlag s_shrink = new('\0', "shrink", "allow shrinking (the data past the new end is lost)");

    /// <summary>The options of <c>qed resize</c>.</summary>
    public static OptionTable Options { get; } = new("resize", "FILE [+|-]SIZE",
        "Change the virtual size of an image: SIZE bytes, or SIZE more (+) or less (-) than now.\n" +
        "Shrinking needs --shrink; on QED it also cuts unused clusters off the end of the file.",
        CommonOptions.Help, CommonOptions.FormatLetter, s_preallocation, CommonOptions.Quiet, s_shrink, CommonOptions.L2CacheSize);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        if (args.Count < 2)
        {
            // qemu-img counts the arguments before anything else; help aside, too few is a usage error.
            if (IsHelpOnly(args))
            {
                return HelpText.WriteCommand(context.Out, Options);
            }
            throw new UsageException("Not enough arguments");
        }
        // The size is taken off the end first, so that a negative size is not read as an option.
        string sizeText = args[^1];
        var parsed = Options.Parse(args.Take(args.Count - 1).ToList());
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        if (parsed.Positionals.Count != 1)
        {
            throw new UsageException("Expecting image file name and size");
        }
        string fileName = parsed.Positionals[0];
        string? format = parsed.Get(CommonOptions.FormatLetter);
        string preallocation = parsed.Get(s_preallocation, PreallocationModes.Off);
        bool quiet = parsed.Has(CommonOptions.Quiet);
        bool shrink = parsed.Has(s_shrink);
        long? l2CacheSize = parsed.GetValue(CommonOptions.L2CacheSize);
        parsed.CheckLater();

        var request = ResizeSize.Parse(sizeText);
        if (request.Error is { } refusal)
        {
            return Refuse(context, refusal);
        }

        using var device = ImageOpener.Open(fileName, format, readOnly: false, l2CacheSize: l2CacheSize);
        long current = ImageOpener.VirtualSize(device);
        long total = request.Apply(current);
        if (total <= 0)
        {
            return context.Error("New image size must be positive");
        }
        if (preallocation != PreallocationModes.Off && total < current)
        {
            return context.Error("Preallocation can only be used for growing images");
        }
        if (total < current && !shrink)
        {
            context.Error("Use the --shrink option to perform a shrink operation.");
            context.Warning("Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.");
            return 1;
        }
        var imageFormat = ImageFormats.Of(device);
        if (preallocation != PreallocationModes.Off && PreallocationModes.Refusal(imageFormat, preallocation) is { } unsupported)
        {
            return context.Error(unsupported);
        }

        try
        {
            device.Resize(total);
        }
        catch (ArgumentOutOfRangeException)
        {
            // The format cannot hold that size (QED: not a multiple of 512, or past what its L1 table addresses).
            return context.Error("Invalid image size specified");
        }
        if (preallocation != PreallocationModes.Off && total > current)
        {
            // falloc and full: the new space is allocated (fallocate where the file system can, else zeros written).
            device.WriteZeroes(current, total - current);
            device.Flush();
        }
        if (!quiet)
        {
            context.Out.Write("Image resized.\n");
        }
        if (total < current && imageFormat.CanCheck)
        {
            ReportLeaks(context, device, imageFormat);
        }
        return 0;
    }

    /// <summary>After a shrink, says how many clusters stay leaked in the middle of the file (those at its end were cut off).</summary>
    private static void ReportLeaks(CommandContext context, BlockDevice device, ImageFormat format)
    {
        var result = format.Check(device);
        if (result.Leaks > 0 && format.Describe(device).ClusterSize is { } clusterSize)
        {
            context.Warning($"{result.Leaks} leaked clusters ({result.Leaks * clusterSize} bytes) stay in the middle of the file: QED cannot reuse them, " +
                "and qemu-img check reports them as leaks, which harm no data");
        }
    }

    /// <summary>True for <c>qed resize --help</c> (or <c>-h</c>, <c>--he</c>) with nothing else.</summary>
    private static bool IsHelpOnly(IReadOnlyList<string> args)
    {
        try
        {
            return args.Count == 1 && Options.Parse(args).HelpRequested;
        }
        catch (CliException)
        {
            return false;
        }
        catch (GetOptException)
        {
            return false;
        }
    }

    /// <summary>qemu-img's message for a size it cannot parse: one line, and for a malformed number its two-line hint.</summary>
    private static int Refuse(CommandContext context, string message)
    {
        string[] lines = message.Split('\n');
        context.Error(lines[0]);
        foreach (string line in lines.Skip(1))
        {
            context.Err.WriteLine(line);
        }
        return 1;
    }
}
