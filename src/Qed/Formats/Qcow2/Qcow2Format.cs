using System.Globalization;
using Qed.Image;
using Qed.IO;
using Qed.Tables;

namespace Qed.Formats.Qcow2;

/// <summary>
/// qcow2 (QCOW2.md): read as an image of its own and as a backing file, written as a <c>convert</c> target, checked
/// without repair. The class is split by job: opening and describing here, creating and writing in
/// <c>Qcow2Format.Create.cs</c>, the check in <c>Qcow2Format.Check.cs</c>.
/// </summary>
internal sealed partial class Qcow2Format : ImageFormat
{
    /// <inheritdoc />
    public override string Name => "qcow2";

    /// <inheritdoc />
    // Magic and a version of 2 or more (QCOW2.md §2.4); version 1 is the old qcow format, recognised separately.
    internal override bool Recognizes(ReadOnlySpan<byte> head) => Qcow2Header.IsQcow2(head);

    /// <inheritdoc />
    // Read-only: a writable open is refused by the chain opener in one line (CanWrite stays false).
    public override bool CanOpen => true;

    /// <inheritdoc />
    // QEMU's qcow2 driver refuses to share the image with writers, read-only opens too.
    internal override bool RefusesSharedWriters => true;

    internal override async ValueTask<ImageOpening> BeginOpenAsync(FileAccessor file, ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken) =>
        new Opening(await Qcow2Image.BeginOpenAsync(file, options, useAsync, cancellationToken).ConfigureAwait(false));

    /// <inheritdoc />
    public override ImageDescription Describe(BlockDevice device)
    {
        var image = Image(device);
        var header = image.Header;
        return new ImageDescription
        {
            Format = Name,
            VirtualSize = image.Size,
            ClusterSize = (int)header.ClusterSize,
            NeedsCheck = (header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Dirty) != 0,
            BackingFileName = image.BackingFileName,
            BackingFilePath = image.BackingFilePath,
            BackingFormat = image.BackingFormat,
            Encrypted = header.CryptMethod != 0,
            Snapshots = image.Snapshots.Describe(),
            FormatSpecific = FormatSpecific(image),
        };
    }

    /// <summary>qemu-img's format-specific data for qcow2, in its key order (v2 has only compat, compression type, refcount bits and encrypt).</summary>
    private static List<ImageDetail> FormatSpecific(Qcow2Image image)
    {
        var header = image.Header;
        bool v3 = header.Version >= 3;
        var details = new List<ImageDetail>
        {
            new("compat", v3 ? "1.1" : "0.10", ImageDetailKind.Text),
            new("compression-type", header.CompressionType == 0 ? "zlib" : "zstd", ImageDetailKind.Text),
        };
        if (v3)
        {
            details.Add(Boolean("lazy-refcounts", (header.CompatibleFeatures & 1) != 0));
            if (image.Bitmaps.Count > 0)
            {
                details.Add(Qcow2ImageDetails.Bitmaps(image.Bitmaps));
            }
        }
        details.Add(new("refcount-bits", header.RefcountBits.ToString(CultureInfo.InvariantCulture), ImageDetailKind.Number));
        if (v3 && image.Extensions.DataFileName is { } dataFile)
        {
            details.Add(new("data-file", dataFile, ImageDetailKind.Text));
        }
        if (v3 && image.HasExternalData)
        {
            details.Add(Boolean("data-file-raw", (header.AutoclearFeatures & 2) != 0));
        }
        if (Qcow2ImageDetails.Encrypt(header.CryptMethod, image.LuksHeader) is { } encrypt)
        {
            details.Add(encrypt);
        }
        if (v3)
        {
            details.Add(Boolean("corrupt", (header.IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt) != 0));
            details.Add(Boolean("extended-l2", header.ExtendedL2));
        }
        return details;
    }

    private static ImageDetail Boolean(string name, bool value) => new(name, value ? "true" : "false", ImageDetailKind.Boolean);

    /// <inheritdoc />
    internal override long? GetL2TableSpan(BlockDevice device) => Image(device).L2TableSpan;

    /// <inheritdoc />
    public override L2CacheStatistics? GetCacheStatistics(BlockDevice device) => Image(device).CacheStatistics;

    /// <inheritdoc />
    // QEMU reads dirty or corrupt images silently; we say once, for data opens, that the data may be what a crashed or
    // failing writer left. Stale bitmaps (the extension without its autoclear bit) get QEMU's own two lines at any open.
    internal override string? OpenWarning(BlockDevice device, bool forData)
    {
        var image = Image(device);
        var flags = image.Header.IncompatibleFeatures;
        if (forData && (flags & Qcow2IncompatibleFeatures.Corrupt) != 0)
        {
            return $"'{device.FileName}' is marked corrupt (qcow2 corrupt bit); reading it read-only as it is (qed check shows what is wrong)";
        }
        if (forData && (flags & Qcow2IncompatibleFeatures.Dirty) != 0)
        {
            return $"'{device.FileName}' was not closed cleanly (qcow2 dirty bit); reading it read-only as it is, refcounts not repaired";
        }
        if (image.Extensions.HasStaleBitmaps)
        {
            string stale = image.Header.Version < 3
                ? "This qcow2 v2 image contains bitmaps, but they may have been modified by a program without persistent bitmap support; so now they must all be considered inconsistent"
                : "a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent";
            return stale + "\nSome clusters may be leaked, run 'qemu-img check -r' on the image file to fix.";
        }
        return null;
    }

    private Qcow2Image Image(BlockDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return device as Qcow2Image ?? throw new ArgumentException($"'{device.FileName}' is a {device.FormatName} image, not {Title}.", nameof(device));
    }

    private sealed class Opening(Qcow2Image image) : ImageOpening
    {
        public override BlockDevice Device => image;

        public override string? BackingPath => image.BackingFilePath;

        public override string? BackingFormat => image.BackingFormat;

        public override void AttachBacking(BlockDevice backing) => image.AttachBacking(backing);
    }
}
