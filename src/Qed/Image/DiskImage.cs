using Qed.Backing;
using Qed.Formats;
using Qed.IO;

namespace Qed.Image;

/// <summary>Opens an image of any format the library reads (<see cref="ImageFormats"/>) as a <see cref="BlockDevice"/>, probing the format as qemu-img does when none is given.</summary>
public static class DiskImage
{
    /// <summary>Opens <paramref name="path"/> as the format named <paramref name="format"/> (<c>qed</c>, <c>raw</c>), or probes it when null: a registered signature decides, anything else is raw.</summary>
    /// <exception cref="QedException">The file cannot be opened, is not valid in that format, or its backing chain cannot be opened.</exception>
    public static BlockDevice Open(string path, string? format = null, ImageOpenOptions? options = null) =>
        ChainOpener.OpenAsync(path, format, options ?? new ImageOpenOptions(), useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <inheritdoc cref="Open"/>
    public static ValueTask<BlockDevice> OpenAsync(string path, string? format = null, ImageOpenOptions? options = null, CancellationToken cancellationToken = default) =>
        ChainOpener.OpenAsync(path, format, options ?? new ImageOpenOptions(), useAsync: true, cancellationToken);

    /// <summary>
    /// Opens the existing file at <paramref name="path"/> without changing it and holds the locks <c>qemu-img create</c>
    /// takes until the result is disposed, so that QEMU and qed refuse to open it meanwhile (for replacing a file, e.g.
    /// with a finished temporary one). Returns null when there is no such file.
    /// </summary>
    /// <exception cref="QedLockException">Another process uses the file (message <c>Failed to get "write" lock</c>); nothing is held.</exception>
    /// <exception cref="QedException">The file exists but cannot be opened for writing.</exception>
    internal static IDisposable? LockForOverwrite(string path)
    {
        try
        {
            return HandleFileAccessor.OpenForOverwrite(path, FileMode.Open);
        }
        catch (QedException e) when (e is not QedLockException && e.InnerException is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }
}
