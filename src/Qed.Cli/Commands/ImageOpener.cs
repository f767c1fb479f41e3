using Qed.Image;
using Qed.IO;

namespace Qed.Cli.Commands;

/// <summary>Opens images for the commands and words open failures as qemu-img does (<c>Could not open 'FILE': reason</c>).</summary>
internal static class ImageOpener
{
    /// <summary>Sector size qemu rounds raw images up to.</summary>
    public const long SectorSize = 512;

    /// <summary>Opens <paramref name="path"/> as <paramref name="format"/> (probed when null).</summary>
    /// <exception cref="CliException">The image or its backing chain cannot be opened; the message is qemu-img's one line.</exception>
    public static BlockDevice Open(string path, string? format, bool readOnly, bool withBacking = true)
    {
        try
        {
            return DiskImage.Open(path, format, new QedOpenOptions { ReadOnly = readOnly, NoBacking = !withBacking });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException(CouldNotOpen(path, e));
        }
    }

    /// <summary>The engine's message, prefixed with <c>Could not open 'PATH': </c> unless it already names the file that way.</summary>
    public static string CouldNotOpen(string path, Exception e)
    {
        string message = Program.Describe(e);
        string prefix = $"Could not open '{path}'";
        return message.StartsWith(prefix, StringComparison.Ordinal) ? message : $"{prefix}: {message}";
    }

    /// <summary>The engine's open failure without any prefix (qemu-io prints <c>can't open device FILE: reason</c>).</summary>
    public static BlockDevice OpenForIo(string path, string? format, bool readOnly)
    {
        try
        {
            return DiskImage.Open(path, format, new QedOpenOptions { ReadOnly = readOnly });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"can't open device {path}: {Program.Describe(e)}");
        }
    }

    /// <summary>The size qemu shows for a device: raw files are rounded up to whole sectors (a 6-byte file is a 512-byte disk).</summary>
    public static long VirtualSize(BlockDevice device) =>
        device is RawImage ? RoundUpToSector(device.Size) : device.Size;

    /// <summary>Rounds up to a multiple of 512.</summary>
    public static long RoundUpToSector(long size) =>
        size > long.MaxValue - (SectorSize - 1) ? long.MaxValue & ~(SectorSize - 1) : (size + SectorSize - 1) & ~(SectorSize - 1);

    /// <summary>Refuses format names other than qed and raw with qemu-img's wording.</summary>
    public static void CheckKnownFormat(string? format, string? filePrefix = null)
    {
        if (format is not null and not ("qed" or "raw"))
        {
            throw new CliException($"{filePrefix}Unknown file format '{format}'");
        }
    }
}
