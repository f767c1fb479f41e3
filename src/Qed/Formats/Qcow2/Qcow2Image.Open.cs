using Qed.Backing;
using Qed.Image;
using Qed.IO;

namespace Qed.Formats.Qcow2;

// Opening, first stage of the chain opener (Backing/ChainOpener.cs): everything is read and validated in QEMU 7.2's
// order (QCOW2.md §2.3), nothing is written, the backing file is named but not opened.
internal sealed partial class Qcow2Image
{
    /// <summary>What every open but a metadata-only one refuses (QEMU asks for a key it could decrypt with; qed does not decrypt).</summary>
    internal const string EncryptedRefusal = "encrypted qcow2 images are not supported";

    /// <summary>How rule 10's message starts (the header names no bits; the feature table may).</summary>
    private const string UnsupportedFeaturesPrefix = "Unsupported qcow2 feature(s)";

    /// <summary>
    /// Reads and validates the header (rules 1-23; a check open skips 14, 17, 18), the extensions (24), the data file
    /// (25: opened relative to the current directory, as QEMU does, except for metadata-only opens), the LUKS pointer and
    /// backing name (26, 27), refuses encrypted images unless only the metadata is wanted, reads the snapshot table (28,
    /// not for a check open) and the active L1 table. The caller still owns (and on failure disposes) <paramref name="file"/>.
    /// </summary>
    /// <exception cref="QedException">A rule is broken (QEMU's message), the image is encrypted, or a file cannot be read.</exception>
    internal static async ValueTask<Qcow2Image> BeginOpenAsync(FileAccessor file, ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken)
    {
        if (!options.ReadOnly || !file.IsReadOnly)
        {
            // The chain opener refuses this for opens by path; an already open file (a fuzzer's, a test's) lands here.
            throw new QedUnsupportedException($"'{file.Path}' is a qcow2 image, which this library can open only read-only");
        }
        bool forCheck = options.SkipCheckOnOpen;
        byte[] head = new byte[Qcow2Header.ReadLength];
        await file.ReadZeroPaddedAsync(head, 0, useAsync, cancellationToken).ConfigureAwait(false);
        var header = Qcow2Header.Parse(head);
        byte[]? cluster0 = null;
        try
        {
            header.Validate(forWriting: false, forCheck);
        }
        catch (QedUnsupportedException e) when (e.Message.StartsWith(UnsupportedFeaturesPrefix, StringComparison.Ordinal))
        {
            // Rules are checked in order, so rules 2-9 held. Rule 10 names the unknown bits from the image's own feature table, as QEMU does.
            cluster0 = await ReadCluster0Async(file, header, useAsync, cancellationToken).ConfigureAwait(false);
            ulong unknown = (ulong)(header.IncompatibleFeatures & ~Qcow2IncompatibleFeatures.Known);
            throw new QedUnsupportedException(Qcow2Extensions.UnsupportedFeatureMessage(Qcow2Extensions.ReadFeatureNames(cluster0, header), unknown));
        }

        cluster0 = await ReadCluster0Async(file, header, useAsync, cancellationToken).ConfigureAwait(false);
        var extensions = Qcow2Extensions.Parse(cluster0, header);
        bool externalData = (header.IncompatibleFeatures & Qcow2IncompatibleFeatures.ExternalDataFile) != 0;
        if (externalData && extensions.DataFileName is not { Length: > 0 })
        {
            throw new QedFormatException("'data-file' is required for this image");
        }
        string? backingName = extensions.ReadBackingName(cluster0, header, options.MetadataOnly);
        if (header.CryptMethod != 0 && !options.MetadataOnly)
        {
            throw new QedUnsupportedException(EncryptedRefusal);
        }
        var snapshots = forCheck
            ? Qcow2SnapshotTable.Empty
            : await Qcow2SnapshotTable.ReadAsync(file, header, useAsync, cancellationToken).ConfigureAwait(false);

        // At most 32 MiB (rule 19). Entries past the end of the file read as zeros (an empty range, as in QEMU), so only
        // the part inside the file is read and held: a 4 Mi-entry L1 on a small file costs what the file holds.
        long l1InFile = Math.Clamp(file.GetLength() - (long)header.L1TableOffset, 0, (long)header.L1Size * sizeof(ulong)) & ~(long)(sizeof(ulong) - 1);
        byte[] l1 = new byte[l1InFile];
        await file.ReadZeroPaddedAsync(l1, (long)header.L1TableOffset, useAsync, cancellationToken).ConfigureAwait(false);

        byte[]? luks = options.MetadataOnly ? await Qcow2ImageDetails.ReadLuksHeaderAsync(file, extensions, useAsync, cancellationToken).ConfigureAwait(false) : null;
        // QEMU loads the persistent bitmaps at every open and refuses the image when they break its rules.
        var bitmaps = await Qcow2BitmapDirectory.ReadAsync(file, extensions, header, useAsync, cancellationToken).ConfigureAwait(false);

        // Last, so that nothing can fail after it is open: QEMU opens the name as stored, relative to the current directory.
        var dataFile = externalData && !options.MetadataOnly ? HandleFileAccessor.Open(extensions.DataFileName!, readOnly: true) : null;
        var map = new Qcow2Mapping(file, header, l1, externalData, options);
        return new Qcow2Image(file, dataFile, header, extensions, snapshots, map, backingName)
        {
            BackingFilePath = backingName is null ? null : BackingChain.Resolve(file.Path, backingName),
            LuksHeader = luks,
            Bitmaps = bitmaps,
        };
    }

    /// <summary>Cluster 0 whole (at most 2 MiB once rule 3 passed), zero-padded past the end of the file.</summary>
    private static async ValueTask<byte[]> ReadCluster0Async(FileAccessor file, Qcow2Header header, bool useAsync, CancellationToken cancellationToken)
    {
        byte[] cluster0 = new byte[header.ClusterSize];
        await file.ReadZeroPaddedAsync(cluster0, 0, useAsync, cancellationToken).ConfigureAwait(false);
        return cluster0;
    }
}
