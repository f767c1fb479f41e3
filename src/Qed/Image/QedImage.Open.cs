using Qed.Backing;
using Qed.Check;
using Qed.Format;
using Qed.Formats;
using Qed.IO;

namespace Qed.Image;

// Opening and creating, in the stages of the chain opener (Backing/ChainOpener.cs): parse and validate the header, read
// the backing name and the L1 table (nothing written); the opener attaches the backing device; then the writes an open
// may need (auto-clear bits, repair of an image left dirty).
public sealed partial class QedImage
{
    /// <summary>Opens a QED image and its backing chain.</summary>
    /// <exception cref="QedException">The file cannot be opened or is not a valid QED image, or its backing chain cannot be opened.</exception>
    public static QedImage Open(string path, ImageOpenOptions? options = null) =>
        (QedImage)ChainOpener.OpenAsync(path, ImageFormats.Qed, options ?? new ImageOpenOptions(), useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>Opens a QED image and its backing chain.</summary>
    /// <exception cref="QedException">The file cannot be opened or is not a valid QED image, or its backing chain cannot be opened.</exception>
    public static async ValueTask<QedImage> OpenAsync(string path, ImageOpenOptions? options = null, CancellationToken cancellationToken = default) =>
        (QedImage)await ChainOpener.OpenAsync(path, ImageFormats.Qed, options ?? new ImageOpenOptions(), useAsync: true, cancellationToken).ConfigureAwait(false);

    /// <summary>Creates a QED image laid out byte for byte as <c>qemu-img create -f qed</c> does.</summary>
    /// <exception cref="QedException">An option is invalid or would make an image QEMU cannot open.</exception>
    public static void Create(string path, QedCreateOptions options) =>
        QedCreator.CreateAsync(path, options, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>Creates a QED image laid out byte for byte as <c>qemu-img create -f qed</c> does.</summary>
    /// <exception cref="QedException">An option is invalid or would make an image QEMU cannot open.</exception>
    public static ValueTask CreateAsync(string path, QedCreateOptions options, CancellationToken cancellationToken = default) =>
        QedCreator.CreateAsync(path, options, useAsync: true, cancellationToken);

    /// <summary>Opens the image in <paramref name="file"/> (not locked here) with its backing chain; the caller keeps owning the file if this fails.</summary>
    internal static async ValueTask<QedImage> OpenCoreAsync(FileAccessor file, ImageOpenOptions options, BackingChain chain, bool useAsync, CancellationToken cancellationToken) =>
        (QedImage)await ChainOpener.OpenAsync(file, ImageFormats.Qed, options, chain, useAsync, cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// First stage of an open: reads and validates the header, the backing name and the L1 table, and writes nothing. The
    /// backing file is neither opened nor attached (<see cref="AttachBacking"/>), and the writes of an open wait for
    /// <see cref="CompleteOpenAsync"/>. The caller still owns (and on failure disposes) <paramref name="file"/>.
    /// </summary>
    internal static async ValueTask<QedImage> BeginOpenAsync(FileAccessor file, ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken)
    {
        // Once a flush has failed no later one may claim durability.
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
        if (backingName is not null)
        {
            image.BackingFilePath = BackingChain.Resolve(file.Path, backingName);
        }
        return image;
    }

    /// <summary>Last stage of an open, once the chain is attached: the writes an open may need. A failure leaves the bit that asked for them set.</summary>
    internal async ValueTask CompleteOpenAsync(ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken)
    {
        if (!IsReadOnly && Header.AutoclearFeatures != 0)
        {
            // Unknown auto-clear bits describe data a newer writer kept in sync; we cannot, so they go.
            await _headerState.UpdateAsync(static h => h with { AutoclearFeatures = 0 }, useAsync, cancellationToken).ConfigureAwait(false);
        }
        if (!IsReadOnly && Header.NeedsCheck && !options.SkipCheckOnOpen)
        {
            // A writer left the metadata possibly inconsistent: repair before first use (§8.6). As in QEMU, a repair
            // that could not read or write fails the open; the bit stays set, so the next open repairs again.
            var (result, failure) = await RunCheckAsync(RepairMode.All, useAsync, cancellationToken).ConfigureAwait(false);
            if (result.CheckErrors > 0)
            {
                throw new QedException($"'{FileName}' was not closed cleanly and repairing it failed: {result.FirstError}", failure);
            }
        }
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

    /// <summary>Makes <paramref name="backing"/> (opened read-only by the chain opener) the device unallocated clusters fall through to; the image disposes it.</summary>
    internal void AttachBacking(BlockDevice backing) => _backing = backing;
}
