using Qed.Cli.CommandLine;
using Qed.Cli.Native;
using Qed.Cli.Output;
using Qed.Formats;
using Qed.Image;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary><c>qed info [-f FMT] [--output=human|json] [--backing-chain] [-U] [--l2-cache-size=SIZE] FILE</c>: qemu-img info for the formats the library reads.</summary>
/// <remarks>
/// Images are opened read-only, so nothing on disk changes (not even a set need-check bit). Without
/// <c>--backing-chain</c> the backing file is not opened at all, so a missing backing file does not prevent info.
/// <c>dirty-flag</c> is the need-check bit as stored on disk; qemu-img 7.2 always reports false for QED.
/// </remarks>
internal static class InfoCommand
{
    private static readonly CliFlag s_backingChain = new('\0', "backing-chain", "describe every image of the backing chain, not only the top one");

    /// <summary>The options of <c>qed info</c>.</summary>
    public static OptionTable Options { get; } = new("info", "FILE",
        "Show the format, sizes and backing file of an image (read-only).",
        CommonOptions.Help, CommonOptions.Format, CommonOptions.Output, s_backingChain, CommonOptions.ForceShare, CommonOptions.L2CacheSize);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        var parsed = Options.Parse(args);
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        string? format = parsed.Get(CommonOptions.Format);
        string output = parsed.Get(CommonOptions.Output, "human");
        bool backingChain = parsed.Has(s_backingChain);
        bool forceShare = parsed.Has(CommonOptions.ForceShare);
        long? l2CacheSize = parsed.GetValue(CommonOptions.L2CacheSize);
        string fileName = parsed.SingleImage();
        parsed.CheckLater();

        // The whole chain is opened first (as qemu-img does): a broken chain prints nothing but the error.
        // Only metadata is read, so, like qemu-img info, no "consistent read" lock is taken: a QED image (whose driver
        // refuses writers) is still refused while something writes it, unless -U; a raw image never is.
        var options = ImageOpener.Options(readOnly: true, l2CacheSize, forceShare) with { NoBacking = !backingChain, MetadataOnly = true };
        using var top = OpenChain(fileName, format, options);
        var chain = new List<ImageInfo>();
        for (BlockDevice? device = top; device is not null; device = backingChain ? device.Backing : null)
        {
            chain.Add(Describe(device, device == top ? fileName : device.FileName));
        }

        if (output == "json")
        {
            ImageInfoWriter.WriteJson(context.Out, chain, asArray: backingChain);
            return 0;
        }
        for (int i = 0; i < chain.Count; i++)
        {
            if (i > 0)
            {
                context.Out.Write('\n');
            }
            ImageInfoWriter.WriteHuman(context.Out, chain[i]);
        }
        return 0;
    }

    /// <summary>Opens the image (and, for <c>--backing-chain</c>, its chain) as <see cref="ImageOpener.Open(string, string?, ImageOpenOptions)"/> does.</summary>
    /// <remarks>qemu-img info opens each file of a chain on its own, so a backing file in use is named as the file that could not be opened.</remarks>
    private static BlockDevice OpenChain(string fileName, string? format, ImageOpenOptions options)
    {
        try
        {
            return ImageOpener.Open(fileName, format, options);
        }
        catch (CliException e) when (BackingFileLock(e) is { } locked)
        {
            throw new CliException($"Could not open '{locked.ImagePath}': {locked.Message}", locked);
        }
    }

    /// <summary>The lock failure of a backing file inside <paramref name="e"/>, if that is what failed.</summary>
    private static QedLockException? BackingFileLock(Exception? e)
    {
        bool inBacking = false;
        for (; e is not null; e = e.InnerException)
        {
            inBacking |= e is QedBackingFileException;
            if (e is QedLockException locked && inBacking)
            {
                return locked;
            }
        }
        return null;
    }

    /// <summary>Collects the report for one open device: the host file's allocation and its format's description.</summary>
    public static ImageInfo Describe(BlockDevice device, string fileName)
    {
        var description = ImageFormats.Of(device).Describe(device);
        return new ImageInfo
        {
            FileName = ImageOpener.DisplayName(device, fileName),
            Format = description.Format,
            VirtualSize = description.VirtualSize,
            ActualSize = FileAllocation.GetAllocatedBytes(device.FileName),
            ClusterSize = description.ClusterSize,
            DirtyFlag = ImageOpener.IsNbd(device) ? null : description.NeedsCheck, // qemu-img has no dirty flag for an NBD export
            BackingFileName = description.BackingFileName,
            FullBackingFileName = description.BackingFilePath,
            BackingFormat = description.BackingFormat,
            FormatSpecific = description.FormatSpecific,
            Encrypted = description.Encrypted,
            Snapshots = description.Snapshots,
        };
    }
}
