using Qed.Backing;
using Qed.Formats;
using Qed.Image;
using Qed.IO;

namespace Qed.Cli.Commands.Rebase;

/// <summary>
/// The checks of a new backing file name shared by <c>rebase</c> and <c>amend</c>, all made before anything is written:
/// a backing format for a non-empty name (never probed), a format name qemu-img knows, no loop, and what the image's format
/// says about storing the name. Failures read as qemu-img's: <c>Could not change the backing file to 'NAME': reason</c>.
/// </summary>
internal static class BackingChange
{
    /// <summary>The prefix of qemu-img's refusals of a header change.</summary>
    public static string Refusal(string backingFile, string reason) => $"Could not change the backing file to '{backingFile}': {reason}";

    /// <summary><c>-F</c> (or <c>backing_fmt</c>) names a format qemu-img knows: <c>Invalid format name: 'X'</c> otherwise.</summary>
    public static void CheckFormatName(string? backingFormat)
    {
        if (backingFormat is not null && ImageFormats.Find(backingFormat) is null)
        {
            throw new CliException($"Invalid format name: '{backingFormat}'");
        }
    }

    /// <summary>qemu-img 7.2 requires the format of a new backing file (it is never probed): its message, but before any write.</summary>
    public static void RequireFormat(string backingFile, string? backingFormat)
    {
        if (backingFile.Length > 0 && backingFormat is null)
        {
            throw new CliException(Refusal(backingFile, "backing format must be specified"));
        }
    }

    /// <summary>Whether the image's format can store the name in this image (QED: compatible features, room in the header area, length).</summary>
    public static void CheckImage(BlockDevice image, string backingFile)
    {
        try
        {
            ImageFormats.Of(image).CheckBackingFileChange(image, backingFile);
        }
        catch (Exception e) when (e is QedException or ArgumentException)
        {
            throw new CliException(Refusal(backingFile, Program.Describe(e)), e);
        }
    }

    /// <summary>Writes the new header (crash-safe, in the engine); failures read as qemu-img's.</summary>
    public static void Apply(BlockDevice image, string backingFile, string? backingFormat)
    {
        try
        {
            ImageFormats.Of(image).ChangeBackingFile(image, backingFile, backingFile.Length == 0 ? null : backingFormat);
        }
        catch (Exception e) when (e is IOException or ArgumentException)
        {
            throw new CliException(Refusal(backingFile, Program.Describe(e)), e);
        }
    }

    /// <summary>
    /// Refuses a name whose chain leads back to <paramref name="imagePath"/>: the image itself, or a file whose backing chain
    /// contains it (qemu-img <c>rebase -u</c> writes such a header, and the image can no longer be opened). The chain is
    /// followed through headers only (no backing opened, shared access, so an image in use is fine); it ends where a file
    /// does not open, which <c>-u</c> allows (the backing file need not exist yet).
    /// </summary>
    public static void CheckLoop(string imagePath, string backingFile, string? backingFormat)
    {
        if (backingFile.Length == 0)
        {
            return;
        }
        var chain = BackingChain.Start(imagePath);
        var options = new ImageOpenOptions { ReadOnly = true, ForceShare = true, NoBacking = true, MetadataOnly = true };
        string? path = BackingChain.Resolve(imagePath, backingFile);
        string? format = backingFormat;
        while (path is not null)
        {
            try
            {
                chain = chain.Enter(path, options);
            }
            catch (QedBackingFileException e)
            {
                throw new CliException(Refusal(backingFile, e.Message), e);
            }
            BlockDevice device;
            try
            {
                device = DiskImage.Open(path, format, options);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return;
            }
            using (device)
            {
                var description = ImageFormats.Of(device).Describe(device);
                path = description.BackingFilePath;
                format = description.BackingFormat;
            }
        }
    }
}
