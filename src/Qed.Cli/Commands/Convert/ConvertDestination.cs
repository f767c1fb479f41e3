using Qed.Cli.Native;
using Qed.Formats;
using Qed.IO;

namespace Qed.Cli.Commands.Convert;

/// <summary>Where <c>qed convert</c> writes its output, and the one step that makes the output appear under the destination's name.</summary>
/// <remarks>
/// A regular (or missing) destination is never written in place, so neither a failure nor a kill leaves a partial image
/// that looks complete, and the file that was there is not lost:
/// <list type="number">
/// <item>The output is created as a new file in the destination's directory (the directory of the file a symbolic link
/// finally names), called <c>.NAME.qed-convert-XXXXXX</c>: hidden, and no name anyone asked for. An existing destination
/// is only opened for writing, as the permission check that qemu-img's truncating open makes, and gives the new file its
/// permission bits.</item>
/// <item>The copy is written to the new file and flushed to disk.</item>
/// <item>The new file is renamed over the destination: one atomic step, so the name shows the old file or the complete
/// new one, never a mixture.</item>
/// <item>On any failure the new file is deleted and the destination was never written. After a SIGKILL or a power cut
/// only the hidden file can remain.</item>
/// </list>
/// A block or character device is written in place, as qemu-img does: only raw output, only when the device holds the
/// whole disk, and the caller zeroes what the copy skips (a device does not read as zeros). Nothing is ever deleted there.
/// </remarks>
internal sealed class ConvertDestination : IDisposable
{
    private const string TemporaryMarker = ".qed-convert-";
    private const string SuffixCharacters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    private const int SuffixLength = 6;
    // Keeps the hidden name within the 255-byte name limit even for a long destination name in 4-byte UTF-8 characters.
    private const int MaxNameCharactersKept = 50;
    private const int CreateAttempts = 16;

    private readonly string _name;
    private readonly string _format;
    private HandleFileAccessor? _existing;
    private bool _committed;

    private ConvertDestination(string name, string format, string path, string writePath, HandleFileAccessor? existing)
    {
        _name = name;
        _format = format;
        Path = path;
        WritePath = writePath;
        _existing = existing;
    }

    /// <summary>The destination as the user named it.</summary>
    public string Name => _name;

    /// <summary>The file the output replaces in the end (symbolic links followed).</summary>
    public string Path { get; }

    /// <summary>The file written: the hidden new file, or the device itself.</summary>
    public string WritePath { get; }

    /// <summary>True when the destination is a device written in place.</summary>
    public bool InPlace => WritePath == Path;

    /// <summary>
    /// Checks the destination <paramref name="name"/> for <paramref name="imageFormat"/> output of <paramref name="size"/> bytes
    /// and creates the empty hidden file to write (not for a device).
    /// </summary>
    /// <exception cref="CliException">The destination cannot take the output; worded as qemu-img words it (<c>NAME: error while converting FMT: reason</c>).</exception>
    public static ConvertDestination Prepare(string name, ImageFormat imageFormat, long size)
    {
        string format = imageFormat.Name;
        if (name.Length == 0)
        {
            throw Failure(name, format, "Could not create '': No such file or directory");
        }
        string path = FinalPath(name);
        switch (FileKinds.Of(path))
        {
            case FileKind.Directory:
                throw Failure(name, format, $"Could not create '{name}': Is a directory");
            case FileKind.Other:
                throw Failure(name, format, "Could not resize file: Invalid argument");
            case FileKind.Device:
                return PrepareDevice(name, imageFormat, path, size);
            case FileKind.Regular:
                var existing = OpenExisting(name, format, path);
                try
                {
                    string written = CreateHidden(name, format, path, replacing: true);
                    if (!OperatingSystem.IsWindows())
                    {
                        File.SetUnixFileMode(written, File.GetUnixFileMode(path));
                    }
                    return new ConvertDestination(name, format, path, written, existing);
                }
                catch
                {
                    existing.Dispose();
                    throw;
                }
            default:
                return new ConvertDestination(name, format, path, CreateHidden(name, format, path, replacing: false), existing: null);
        }
    }

    /// <summary>The path a name finally refers to: symbolic links followed (a dangling one to the file it would create).</summary>
    public static string FinalPath(string name)
    {
        try
        {
            var info = new FileInfo(name);
            return info.LinkTarget is null ? name : info.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? name;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // A loop of links or an unreadable directory: the open that follows reports it.
            return name;
        }
    }

    /// <summary>A message about the hidden file, with the destination's name in its place (the user never asked for the hidden name).</summary>
    public string Reword(string message) =>
        InPlace ? message : message.Replace(WritePath, _name, StringComparison.Ordinal);

    /// <summary>Makes the flushed output the destination: renames the hidden file over it (nothing to do for a device).</summary>
    /// <exception cref="CliException">The rename failed; the hidden file is deleted on dispose and the destination is as it was.</exception>
    public void Commit()
    {
        if (!InPlace)
        {
            try
            {
                File.Move(WritePath, Path, overwrite: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw Failure(_name, _format, Reword($"Could not replace '{_name}': {HandleFileAccessor.DescribeOpenError(e)}"));
            }
        }
        _committed = true;
        _existing?.Dispose();
        _existing = null;
    }

    /// <summary>Deletes the hidden file unless it was committed; the destination itself is never deleted.</summary>
    public void Dispose()
    {
        _existing?.Dispose();
        _existing = null;
        if (!_committed && !InPlace)
        {
            FileCleanup.DeleteQuietly(WritePath);
        }
    }

    private static ConvertDestination PrepareDevice(string name, ImageFormat imageFormat, string path, long size)
    {
        string format = imageFormat.Name;
        if (imageFormat.GrowsFile)
        {
            // A QED image grows at the end of its file, which a device cannot do (qemu-img fails the same way, after wiping the header).
            throw Failure(name, format, "Cannot resize device files");
        }
        var device = OpenExisting(name, format, path);
        try
        {
            long deviceSize;
            try
            {
                deviceSize = FileKinds.DeviceSize(device.Handle);
            }
            catch (IOException e)
            {
                throw Failure(name, format, $"Could not get the size of '{name}': {e.Message}");
            }
            if (deviceSize < size)
            {
                throw Failure(name, format, "Cannot grow device files");
            }
            return new ConvertDestination(name, format, path, path, device);
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens an existing destination for writing without changing it and takes the locks <c>qemu-img create</c> takes: it
    /// fails as qemu-img's open would (no permission, read-only file system, QEMU or another qed using the image), and
    /// until the output replaces it neither QEMU nor qed can open it.
    /// </summary>
    private static HandleFileAccessor OpenExisting(string name, string format, string path)
    {
        try
        {
            return HandleFileAccessor.OpenForOverwrite(path, FileMode.Open);
        }
        catch (QedLockException e)
        {
            throw new CliException($"{name}: error while converting {format}: {e.Message}", e);
        }
        catch (QedException e)
        {
            throw Failure(name, format, $"Could not create '{name}': {HandleFileAccessor.DescribeOpenError(e.InnerException ?? e)}");
        }
    }

    /// <summary>Creates the empty hidden file beside <paramref name="path"/> with a fresh random name.</summary>
    private static string CreateHidden(string name, string format, string path, bool replacing)
    {
        string directory = System.IO.Path.GetDirectoryName(path) ?? "";
        string kept = System.IO.Path.GetFileName(path);
        if (kept.Length > MaxNameCharactersKept)
        {
            kept = kept[..MaxNameCharactersKept];
        }
        for (int attempt = 1; ; attempt++)
        {
            // The name only has to be unlikely to be taken (CreateNew refuses one that is): Random.Shared will do, and unlike
            // RandomNumberGenerator it does not load OpenSSL, which cost a quarter of a small convert's run time.
            string hidden = System.IO.Path.Combine(directory, "." + kept + TemporaryMarker + new string(Random.Shared.GetItems<char>(SuffixCharacters, SuffixLength)));
            try
            {
                File.OpenHandle(hidden, FileMode.CreateNew, FileAccess.Write).Dispose();
                return hidden;
            }
            catch (IOException) when (attempt < CreateAttempts && File.Exists(hidden))
            {
                // Another run picked the same name: draw again.
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                string reason = HandleFileAccessor.DescribeOpenError(e).Replace(hidden, name, StringComparison.Ordinal);
                // qemu-img's wording; where qemu-img would have written the existing file in place, say why we need the directory.
                string why = replacing ? " (qed writes the new image beside it and renames it over the old one)" : "";
                throw Failure(name, format, $"Could not create '{name}': {reason}{why}");
            }
        }
    }

    private static CliException Failure(string name, string format, string reason) =>
        new($"{name}: error while converting {format}: {reason}");
}
