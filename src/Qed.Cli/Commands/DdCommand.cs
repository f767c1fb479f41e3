using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Convert;
using Qed.Cli.Commands.Dd;
using Qed.Formats;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed dd [-f FMT] [-O FMT] [-U] [bs=BYTES] [count=BLOCKS] [skip=BLOCKS] if=INPUT of=OUTPUT</c>: qemu-img dd, a new
/// image holding a range of the disk INPUT shows (its backing chain merged in).
/// </summary>
/// <remarks>
/// The output holds <c>input[skip*bs, min((skip+count)*bs, size))</c>, as GNU dd copies it (all of the rest without
/// <c>count</c>; nothing when <c>skip</c> reaches past the end, with dd's warning). qemu-img 7.2 documents the same but
/// sizes the output <c>min(count*bs, size) - skip*bs</c>, so <c>bs=64k skip=1 count=1</c> gives it an empty file. A
/// raw output has exactly that many bytes; a QED output is rounded up to whole sectors, as QED sizes must be. Zeros are
/// not written, so the output is sparse. The output is written to a hidden file beside OUTPUT and renamed over it once
/// complete (<see cref="ConvertDestination"/>), so an existing OUTPUT is never left half-written.
/// </remarks>
internal static class DdCommand
{
    private const int RawGranule = 4096;
    private const int SectorSize = 512;

    private static readonly CliOption<string> s_outputFormat = new('O', null, "FMT", "the output format (qed or raw; default raw)", v => v);

    /// <summary>The options of <c>qed dd</c>.</summary>
    public static OptionTable Options { get; } = new("dd", "[bs=BYTES] [count=BLOCKS] [skip=BLOCKS] if=INPUT of=OUTPUT",
        """
        Copy COUNT blocks of BYTES (default 512) of the disk INPUT shows, after
        the first SKIP blocks, to a new sparse image OUTPUT (sizes take k, M, G...).
        """,
        CommonOptions.Help, CommonOptions.FormatLetter, s_outputFormat, CommonOptions.ForceShare, CommonOptions.L2CacheSize);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = Options.Parse(args);
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        var operands = DdOperands.Parse(parsed.Positionals);
        parsed.CheckLater();
        string inputName = operands.Input!;
        string outputName = operands.Output!;
        long? l2CacheSize = parsed.GetValue(CommonOptions.L2CacheSize);

        // As qemu-img dd: the input is opened first, then the output format is looked at.
        var inputOptions = ImageOpener.Options(readOnly: true, l2CacheSize, parsed.Has(CommonOptions.ForceShare)) with { ExcludeWriters = true };
        using var input = ImageOpener.Open(inputName, parsed.Get(CommonOptions.FormatLetter), inputOptions);
        string formatName = parsed.Get(s_outputFormat, ImageFormats.Raw.Name);
        var format = ImageFormats.Find(formatName) is { CanCreate: true } found ? found : throw new CliException("Unknown file format");
        RefuseOverwritingInput(input, outputName);

        var (start, length) = operands.Range(ImageOpener.VirtualSize(input), out bool skippedPastEnd);
        if (skippedPastEnd)
        {
            // qemu-img and GNU dd both go on with an empty output.
            context.Error($"{inputName}: cannot skip to specified offset");
        }
        long outputSize = format.Name == ImageFormats.Raw.Name ? length : RoundUp(length, SectorSize);
        var createOptions = new ImageCreateOptions { Size = outputSize };
        Creating(outputName, () => format.Validate(createOptions));

        using var destination = Creating(outputName, () => ConvertDestination.Prepare(outputName, format, outputSize));
        if (destination.InPlace)
        {
            throw new CliException($"{outputName}: error while creating output image: qed dd writes a new image file, not a device");
        }
        try
        {
            Creating(outputName, () => format.Create(destination.WritePath, createOptions));
            using (var target = format.Open(destination.WritePath, ImageOpener.Options(readOnly: false, l2CacheSize)))
            {
                if (target.Size != outputSize)
                {
                    // Raw files are created in whole sectors, as qemu-img creates them; dd's output has the range's exact length.
                    target.Resize(outputSize);
                }
                int granule = ImageFormats.Of(target).Describe(target).ClusterSize ?? RawGranule;
                new RangeCopier(input, target, granule).Copy(start, length);
                target.Flush();
            }
            destination.Commit();
        }
        catch (Exception e) when (e is CliException or QedException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            // Messages about the hidden file name the output instead.
            throw new CliException(destination.Reword(Reword(Program.Describe(e))), e);
        }
        return 0;
    }

    private static long RoundUp(long value, long alignment) =>
        value > long.MaxValue - (alignment - 1) ? long.MaxValue - long.MaxValue % alignment : (value + alignment - 1) / alignment * alignment;

    /// <summary>Runs a step of creating the output, with qemu-img dd's wording for its failure: <c>OUTPUT: error while creating output image: reason</c>.</summary>
    private static void Creating(string outputName, Action step) => Creating(outputName, () =>
    {
        step();
        return 0;
    });

    /// <inheritdoc cref="Creating(string, Action)"/>
    private static T Creating<T>(string outputName, Func<T> step)
    {
        try
        {
            return step();
        }
        catch (CliException e)
        {
            throw new CliException(Reword(e.Message), e);
        }
        catch (Exception e) when (e is QedException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new CliException($"{outputName}: error while creating output image: {Program.Describe(e)}", e);
        }
    }

    /// <summary>The shared output-file code words its failures for convert; dd's are qemu-img dd's.</summary>
    private static string Reword(string message) =>
        System.Text.RegularExpressions.Regex.Replace(message, "error while converting [a-z0-9]+: ", "error while creating output image: ");

    /// <summary>Writing over the input (or a file of its chain) is refused: the input must stay readable until the copy is done, and it is open for reading.</summary>
    private static void RefuseOverwritingInput(BlockDevice input, string outputName)
    {
        if (outputName.Length == 0)
        {
            return;
        }
        string output = Path.GetFullPath(ConvertDestination.FinalPath(outputName));
        for (BlockDevice? device = input; device is not null; device = device.Backing)
        {
            if (string.Equals(Path.GetFullPath(ConvertDestination.FinalPath(device.FileName)), output, StringComparison.Ordinal))
            {
                throw new CliException($"{outputName}: the output is '{device.FileName}', which the input reads from; refusing to overwrite it");
            }
        }
    }
}
