namespace Qed.Formats.Qcow2.Check;

/// <summary>What a qcow2 check needs from the header extensions (QCOW2.md §3, §9): the structures that hold references besides the tables.</summary>
internal sealed record Qcow2CheckLayout
{
    /// <summary>Guest data lives in an external data file: data clusters are not refcounted, compressed clusters and snapshots are corruptions.</summary>
    public bool HasDataFile { get; init; }

    /// <summary>Byte offset of the LUKS header area (encryption extension), 0 when there is none.</summary>
    public ulong CryptoOffset { get; init; }

    /// <summary>Bytes of the LUKS header area, 0 when there is none.</summary>
    public ulong CryptoLength { get; init; }

    /// <summary>Bitmaps in the bitmaps extension, counted only when the extension is present and autoclear bit 0 says it is consistent; otherwise 0.</summary>
    public uint BitmapCount { get; init; }

    /// <summary>Byte offset of the bitmap directory (when <see cref="BitmapCount"/> is not 0).</summary>
    public ulong BitmapDirectoryOffset { get; init; }

    /// <summary>Bytes of the bitmap directory (when <see cref="BitmapCount"/> is not 0).</summary>
    public ulong BitmapDirectorySize { get; init; }

    /// <summary>The bitmaps extension is present but autoclear bit 0 is clear: a program without bitmap support changed the image, so QEMU ignores the bitmaps (their clusters show as leaks) and warns at open.</summary>
    public bool BitmapsInconsistent { get; init; }

    /// <summary>The layout of an image from its validated header and parsed extensions.</summary>
    public static Qcow2CheckLayout From(Qcow2Header header, Qcow2Extensions extensions) => new()
    {
        HasDataFile = (header.IncompatibleFeatures & Qcow2IncompatibleFeatures.ExternalDataFile) != 0,
        CryptoOffset = extensions.CryptoHeader?.Offset ?? 0,
        CryptoLength = extensions.CryptoHeader?.Length ?? 0,
        BitmapCount = extensions.Bitmaps?.Count ?? 0,
        BitmapDirectoryOffset = extensions.Bitmaps?.DirectoryOffset ?? 0,
        BitmapDirectorySize = extensions.Bitmaps?.DirectorySize ?? 0,
        BitmapsInconsistent = extensions.HasStaleBitmaps,
    };
}
