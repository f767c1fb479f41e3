using Qed.Formats;
using Qed.Image;
using Qed.IO;
using Qed.Nbd.Client;

namespace Qed.Backing;

/// <summary>
/// Opens an image and its backing chain through the format registry, in a loop rather than by recursion between formats.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>Open the top file, pick its format (named, or probed), take its locks and begin its open: the format reads and
/// validates the file, writes nothing, and names its backing file (resolved against its own directory) and format.</item>
/// <item>While the last image names a backing file (and the chain is wanted): refuse a NUL in the name, a file already in
/// the chain (a loop) and a chain deeper than the limit; then begin the open of that file the same way, read-only, except
/// the one layer <see cref="ImageOpenOptions.WritableBackingDepth"/> names, which is opened writable with a writer's locks.
/// A failure there becomes "Could not open backing file: ...".</item>
/// <item>Attach each backing device to the image above it.</item>
/// <item>Complete the opens, bottom up: only now may an image write (for QED: clear auto-clear bits, repair a need-check image).</item>
/// </list>
/// Everything that can fail without writing comes first, so a failed open leaves every file as it was. On failure the
/// files this opener opened are closed and the half-open images dropped (closing them could write).
/// </remarks>
internal static class ChainOpener
{
    /// <summary>Opens <paramref name="path"/> as the format named <paramref name="formatName"/>, or probed when null.</summary>
    public static ValueTask<BlockDevice> OpenAsync(string path, string? formatName, ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken) =>
        OpenPathAsync(path, formatName, null, options, useAsync, cancellationToken);

    /// <summary>Opens <paramref name="path"/> as <paramref name="format"/>.</summary>
    public static ValueTask<BlockDevice> OpenAsync(string path, ImageFormat format, ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken) =>
        OpenPathAsync(path, null, format, options, useAsync, cancellationToken);

    /// <summary>Opens an image in an already open <paramref name="file"/> (not locked here) as the top of <paramref name="chain"/>; the caller keeps owning the file if this fails.</summary>
    public static async ValueTask<BlockDevice> OpenAsync(FileAccessor file, ImageFormat format, ImageOpenOptions options, BackingChain chain, bool useAsync, CancellationToken cancellationToken)
    {
        var top = await format.BeginOpenAsync(file, options, useAsync, cancellationToken).ConfigureAwait(false);
        return await CompleteChainAsync(top, chain, options, useAsync, cancellationToken).ConfigureAwait(false);
    }

    private static async ValueTask<BlockDevice> OpenPathAsync(string path, string? formatName, ImageFormat? format, ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken)
    {
        var chain = BackingChain.Start(path);
        var (file, top) = await BeginFileAsync(path, formatName, format, options, useAsync, cancellationToken).ConfigureAwait(false);
        try
        {
            return await CompleteChainAsync(top, chain, options, useAsync, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Steps 2 to 4 for the chain below <paramref name="top"/>, whose file the caller owns.</summary>
    private static async ValueTask<BlockDevice> CompleteChainAsync(ImageOpening top, BackingChain chain, ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken)
    {
        var openings = new List<ImageOpening> { top };
        var files = new List<IDisposable>();
        try
        {
            var backingOptions = options with { ReadOnly = true, WritableBackingDepth = 0 };
            // The writable layer is opened as a writer would open it as the top image: no force-share, its own need-check repair.
            var writableOptions = options with { ReadOnly = false, ForceShare = false, WritableBackingDepth = 0 };
            for (var last = top; !options.NoBacking && last.BackingPath is { } backingPath; last = openings[^1])
            {
                chain = chain.Enter(backingPath, options);
                var layerOptions = openings.Count == options.WritableBackingDepth ? writableOptions : backingOptions;
                var (file, opening) = await BeginBackingAsync(backingPath, last.BackingFormat, layerOptions, useAsync, cancellationToken).ConfigureAwait(false);
                files.Add(file);
                openings.Add(opening);
            }
            if (options.WritableBackingDepth >= openings.Count)
            {
                throw new QedBackingFileException($"'{top.Device.FileName}' has no backing file at depth {options.WritableBackingDepth} to open writable (its chain has {openings.Count - 1})");
            }
            for (int i = openings.Count - 1; i > 0; i--)
            {
                openings[i - 1].AttachBacking(openings[i].Device);
            }
            // From here nothing can fail without an image having been asked to write. Lower images are read-only and write
            // nothing, except a layer opened writable, which completes (and may repair itself) before the images above it.
            for (int i = openings.Count - 1; i >= 0; i--)
            {
                await openings[i].CompleteAsync(useAsync, cancellationToken).ConfigureAwait(false);
            }
            return top.Device;
        }
        catch
        {
            foreach (var file in files)
            {
                file.Dispose();
            }
            throw;
        }
    }

    /// <summary>Begins the open of a backing file; its failures read "Could not open backing file: ...".</summary>
    private static async ValueTask<(IDisposable File, ImageOpening Opening)> BeginBackingAsync(string path, string? formatName, ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken)
    {
        try
        {
            return await BeginFileAsync(path, formatName, null, options, useAsync, cancellationToken).ConfigureAwait(false);
        }
        catch (QedBackingFileException)
        {
            throw;
        }
        catch (QedException e)
        {
            throw new QedBackingFileException($"Could not open backing file: {e.Message}", e);
        }
    }

    /// <summary>Step 1 for one file: open, pick the format, lock, begin. On failure the file is closed again.</summary>
    /// <remarks>An NBD URI instead of a path connects to the export: a raw device, which the returned resource (the device itself) closes.</remarks>
    private static async ValueTask<(IDisposable File, ImageOpening Opening)> BeginFileAsync(string path, string? formatName, ImageFormat? format, ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken)
    {
        if (format is null && formatName is not null)
        {
            // A name we do not know is refused before the file is touched.
            format = ImageFormats.Find(formatName) is { CanOpen: true } named ? named : throw ImageFormats.UnknownDriver(formatName);
        }
        if (NbdUri.IsNbdUri(path))
        {
            var device = await NbdOpening.OpenAsync(path, format, options, useAsync, cancellationToken).ConfigureAwait(false);
            return (device.Device, device);
        }
        var file = HandleFileAccessor.Open(path, options.ReadOnly);
        try
        {
            format ??= await ImageFormats.ProbeForOpenAsync(file, useAsync, cancellationToken).ConfigureAwait(false);
            if (!options.ReadOnly && !format.CanWrite)
            {
                throw new QedUnsupportedException($"'{path}' is a {format.Title} image, which this library can open only read-only");
            }
            // The format decides the locks; they are taken before anything (a repair, an auto-clear rewrite) is written.
            file.Lock(ImageLockSet.ForOpen(format, options));
            var accessor = options.FileWrapper is { } wrap ? wrap(file) : file;
            var opening = await format.BeginOpenAsync(accessor, options, useAsync, cancellationToken).ConfigureAwait(false);
            return (accessor, opening);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }
}
