using Qed.Cli.CommandLine;
using Qed.Formats;
using Qed.Image;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary>Opens images for the commands and words open failures as qemu-img does (<c>Could not open 'FILE': reason</c>).</summary>
internal static class ImageOpener
{
    /// <summary>qemu-img's refusal of <c>-U</c> for a writable open (after <c>Could not open 'FILE': </c> or qemu-io's <c>can't open device FILE: </c>).</summary>
    public const string ForceShareNeedsReadOnly = "force-share=on can only be used with read-only images";

    /// <summary>Open options with the L2 cache size of <c>--l2-cache-size</c> when one was given, and force-share for <c>-U</c>.</summary>
    public static ImageOpenOptions Options(bool readOnly, long? l2CacheSize, bool forceShare = false)
    {
        var options = new ImageOpenOptions { ReadOnly = readOnly, ForceShare = forceShare };
        return l2CacheSize is { } bytes ? options with { L2CacheSize = bytes } : options;
    }

    /// <summary>Opens <paramref name="path"/> as <paramref name="format"/> (probed when null).</summary>
    /// <exception cref="CliException">The image or its backing chain cannot be opened; the message is qemu-img's one line.</exception>
    public static BlockDevice Open(string path, string? format, bool readOnly, bool withBacking = true, long? l2CacheSize = null, bool forceShare = false) =>
        Open(path, format, Options(readOnly, l2CacheSize, forceShare) with { NoBacking = !withBacking });

    /// <summary>Opens <paramref name="path"/> as <paramref name="format"/> (probed when null) with explicit options.</summary>
    /// <exception cref="CliException">The image or its backing chain cannot be opened; the message is qemu-img's one line.</exception>
    public static BlockDevice Open(string path, string? format, ImageOpenOptions options)
    {
        try
        {
            return WarnAbout(DiskImage.Open(path, format, options), options);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException(CouldNotOpen(path, e), e);
        }
    }

    /// <summary>
    /// Prints the warnings of every layer of a chain; those about reading the data as it is only when the open is for
    /// the data (info's description shows the same facts). None for a check, whose report says all it finds.
    /// </summary>
    private static BlockDevice WarnAbout(BlockDevice device, ImageOpenOptions options)
    {
        if (options.SkipCheckOnOpen || CommandContext.Current is not { } context)
        {
            return device;
        }
        bool forData = !options.MetadataOnly;
        for (var layer = device; layer is not null; layer = layer.Backing)
        {
            if (ImageFormats.Find(layer.FormatName)?.OpenWarning(layer, forData) is { } warning)
            {
                context.Warning(warning);
            }
        }
        return device;
    }

    /// <summary>The engine's message, prefixed with <c>Could not open 'PATH': </c> unless it already names the file that way.</summary>
    public static string CouldNotOpen(string path, Exception e)
    {
        string message = Program.Describe(e);
        string prefix = $"Could not open '{path}'";
        return message.StartsWith(prefix, StringComparison.Ordinal) ? message : $"{prefix}: {message}";
    }

    /// <summary>The engine's open failure without any prefix (qemu-io prints <c>can't open device FILE: reason</c>).</summary>
    public static BlockDevice OpenForIo(string path, string? format, bool readOnly, long? l2CacheSize = null, bool forceShare = false)
    {
        if (forceShare && !readOnly)
        {
            throw new CliException($"can't open device {path}: {ForceShareNeedsReadOnly}");
        }
        try
        {
            return WarnAbout(DiskImage.Open(path, format, Options(readOnly, l2CacheSize, forceShare)), new ImageOpenOptions());
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"can't open device {path}: {Program.Describe(e)}", e);
        }
    }

    /// <summary>True when <paramref name="device"/> is an NBD export rather than a file.</summary>
    public static bool IsNbd(BlockDevice device) => device is Qed.Nbd.Client.NbdBlockDevice;

    /// <summary>The name qemu-img prints for a device opened as <paramref name="given"/>: the name as given for a file, qemu's canonical URI for an NBD export.</summary>
    public static string DisplayName(BlockDevice device, string given) =>
        device is Qed.Nbd.Client.NbdBlockDevice ? Qed.Nbd.Client.NbdUri.Parse(device.FileName).QemuName : given;

    /// <summary>The size qemu shows for a device, as its format describes it (raw files are rounded up to whole sectors: a 6-byte file is a 512-byte disk).</summary>
    public static long VirtualSize(BlockDevice device) =>
        ImageFormats.Of(device).Describe(device).VirtualSize;

    /// <summary>The format <c>-f</c> or <c>-O</c> names for a new image; names the library cannot create are refused with qemu-img's wording.</summary>
    public static ImageFormat CreatableFormat(string name, string? filePrefix = null) =>
        ImageFormats.Find(name) is { CanCreate: true } format ? format : throw new CliException($"{filePrefix}Unknown file format '{name}'");
}
