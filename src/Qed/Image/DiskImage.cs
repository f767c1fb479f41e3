using Qed.Backing;
using Qed.IO;

namespace Qed.Image;

/// <summary>Opens any image we support (QED or raw) as a <see cref="BlockDevice"/>, probing the format as qemu-img does when none is given.</summary>
public static class DiskImage
{
    /// <summary>Opens <paramref name="path"/> as <paramref name="format"/> (<c>qed</c> or <c>raw</c>), or probes it when null: QED magic means QED, anything else raw.</summary>
    /// <exception cref="QedException">The file cannot be opened, is not valid in that format, or its backing chain cannot be opened.</exception>
    public static BlockDevice Open(string path, string? format = null, QedOpenOptions? options = null) =>
        OpenCoreAsync(path, format, options ?? new QedOpenOptions(), BackingChain.Start(path), useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <inheritdoc cref="Open"/>
    public static ValueTask<BlockDevice> OpenAsync(string path, string? format = null, QedOpenOptions? options = null, CancellationToken cancellationToken = default) =>
        OpenCoreAsync(path, format, options ?? new QedOpenOptions(), BackingChain.Start(path), useAsync: true, cancellationToken);

    /// <summary>Returns the format of the file at <paramref name="path"/> as the probe sees it.</summary>
    public static string ProbeFormat(string path)
    {
        using var file = HandleFileAccessor.Open(path, readOnly: true);
        byte[] head = new byte[FormatProbe.ProbeLength];
        file.ReadZeroPaddedAsync(head, 0, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();
        return FormatProbe.Probe(head);
    }

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

    internal static async ValueTask<BlockDevice> OpenCoreAsync(string path, string? format, QedOpenOptions options, BackingChain chain, bool useAsync, CancellationToken cancellationToken)
    {
        if (format is not null && !FormatProbe.IsSupported(format))
        {
            throw new QedUnsupportedException($"Unknown driver '{format}': qed reads only QED and raw images");
        }
        var file = HandleFileAccessor.Open(path, options.ReadOnly);
        try
        {
            if (format is null)
            {
                byte[] head = new byte[FormatProbe.ProbeLength];
                await file.ReadZeroPaddedAsync(head, 0, useAsync, cancellationToken).ConfigureAwait(false);
                format = FormatProbe.Probe(head);
                if (!FormatProbe.IsSupported(format))
                {
                    throw new QedUnsupportedException(FormatProbe.Unsupported(path, format));
                }
            }
            // The format decides the locks; they are taken before anything (a repair, an auto-clear rewrite) is written.
            file.Lock(ImageLockSet.ForOpen(format, options));
            if (format == "raw")
            {
                return new RawImage(file);
            }
            return await QedImage.OpenCoreAsync(file, options, chain, useAsync, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }
}
