using Qed.Backing;
using Qed.Check;
using Qed.Format;
using Qed.IO;

namespace Qed.Image;

// Opening and creating: parse and validate the header, read the backing name and the L1 table, attach the backing
// device, then the writes an open may need (auto-clear bits, repair of an image left dirty).
public sealed partial class QedImage
{
    /// <summary>Opens a QED image and its backing chain.</summary>
    /// <exception cref="QedException">The file cannot be opened or is not a valid QED image, or its backing chain cannot be opened.</exception>
    public static QedImage Open(string path, QedOpenOptions? options = null) =>
        OpenCoreAsync(path, options ?? new QedOpenOptions(), BackingChain.Start(path), useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>Opens a QED image and its backing chain.</summary>
    /// <exception cref="QedException">The file cannot be opened or is not a valid QED image, or its backing chain cannot be opened.</exception>
    public static ValueTask<QedImage> OpenAsync(string path, QedOpenOptions? options = null, CancellationToken cancellationToken = default) =>
        OpenCoreAsync(path, options ?? new QedOpenOptions(), BackingChain.Start(path), useAsync: true, cancellationToken);

    /// <summary>Creates a QED image laid out byte for byte as <c>qemu-img create -f qed</c> does.</summary>
    /// <exception cref="QedException">An option is invalid or would make an image QEMU cannot open.</exception>
    public static void Create(string path, QedCreateOptions options) =>
        QedCreator.CreateAsync(path, options, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>Creates a QED image laid out byte for byte as <c>qemu-img create -f qed</c> does.</summary>
    /// <exception cref="QedException">An option is invalid or would make an image QEMU cannot open.</exception>
    public static ValueTask CreateAsync(string path, QedCreateOptions options, CancellationToken cancellationToken = default) =>
        QedCreator.CreateAsync(path, options, useAsync: true, cancellationToken);

    internal static async ValueTask<QedImage> OpenCoreAsync(string path, QedOpenOptions options, BackingChain chain, bool useAsync, CancellationToken cancellationToken)
    {
        var file = HandleFileAccessor.Open(path, options.ReadOnly);
        try
        {
            file.Lock(ImageLockSet.ForOpen("qed", options));
            return await OpenCoreAsync(file, options, chain, useAsync, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    internal static async ValueTask<QedImage> OpenCoreAsync(FileAccessor file, QedOpenOptions options, BackingChain chain, bool useAsync, CancellationToken cancellationToken)
    {
        // Once a flush has failed no later one may claim durability. The caller still owns (and on failure disposes) the file.
        file = new FlushFailureLatch(file);
        long length = file.GetLength();
        byte[] headerBytes = new byte[HeaderLayout.Size];
        await file.ReadZeroPaddedAsync(headerBytes, 0, useAsync, cancellationToken).ConfigureAwait(false);
        var header = QedHeader.Parse(headerBytes);
        var geometry = HeaderValidator.Validate(header, length);
        string? backingName = await ReadBackingNameAsync(file, header, useAsync, cancellationToken).ConfigureAwait(false);

        byte[] l1 = new byte[geometry.TableBytes];
        await file.ReadZeroPaddedAsync(l1, (long)header.L1TableOffset, useAsync, cancellationToken).ConfigureAwait(false);

        var image = new QedImage(file, header, geometry, l1, options, backingName);
        try
        {
            // Everything that can fail without writing comes first, so a failed open leaves the file as it was.
            if (backingName is not null)
            {
                image.BackingFilePath = BackingChain.Resolve(file.Path, backingName);
                if (!options.NoBacking)
                {
                    bool raw = (header.Features & QedFeatures.BackingFormatNoProbe) != 0;
                    image.AttachBacking(await chain.OpenBackingAsync(image.BackingFilePath, raw ? "raw" : null, options, useAsync, cancellationToken).ConfigureAwait(false));
                }
            }
            if (!file.IsReadOnly && header.AutoclearFeatures != 0)
            {
                // Unknown auto-clear bits describe data a newer writer kept in sync; we cannot, so they go.
                await image._headerState.UpdateAsync(static h => h with { AutoclearFeatures = 0 }, useAsync, cancellationToken).ConfigureAwait(false);
            }
            if (!file.IsReadOnly && image.Header.NeedsCheck && !options.SkipCheckOnOpen)
            {
                // A writer left the metadata possibly inconsistent: repair before first use (§8.6). As in QEMU, a repair
                // that could not read or write fails the open; the bit stays set, so the next open repairs again.
                var (result, failure) = await image.RunCheckAsync(RepairMode.All, useAsync, cancellationToken).ConfigureAwait(false);
                if (result.CheckErrors > 0)
                {
                    throw new QedException($"'{file.Path}' was not closed cleanly and repairing it failed: {result.FirstError}", failure);
                }
            }
        }
        catch
        {
            image._backing?.Dispose();
            throw;
        }
        return image;
    }

    /// <summary>The backing file name the header stores, or null when it names none.</summary>
    private static async ValueTask<string?> ReadBackingNameAsync(FileAccessor file, QedHeader header, bool useAsync, CancellationToken cancellationToken)
    {
        if (!header.HasBackingFile)
        {
            return null;
        }
        byte[] name = new byte[header.BackingFilenameSize];
        await file.ReadZeroPaddedAsync(name, header.BackingFilenameOffset, useAsync, cancellationToken).ConfigureAwait(false);
        // QEMU reads the name as a C string: it ends at the first NUL byte, and an empty one means no backing file.
        int end = Array.IndexOf(name, (byte)0);
        return end == 0 ? null : System.Text.Encoding.UTF8.GetString(name, 0, end < 0 ? name.Length : end);
    }

    /// <summary>Makes <paramref name="backing"/> (opened read-only by the caller) the device unallocated clusters fall through to; the image disposes it.</summary>
    private void AttachBacking(BlockDevice backing) => _backing = backing;
}
