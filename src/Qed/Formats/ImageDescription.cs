namespace Qed.Formats;

/// <summary>What <c>qemu-img info</c> reports about one image beyond the host file: the format's own view of it.</summary>
public sealed record ImageDescription
{
    /// <summary>The format's name as qemu-img spells it (<c>qed</c>, <c>raw</c>).</summary>
    public required string Format { get; init; }

    /// <summary>Virtual disk size in bytes as QEMU reports it (raw files are counted in whole 512-byte sectors).</summary>
    public required long VirtualSize { get; init; }

    /// <summary>Cluster size in bytes, for formats that have clusters.</summary>
    public int? ClusterSize { get; init; }

    /// <summary>True when the image's own "not closed cleanly" mark is set on disk (QED's need-check bit).</summary>
    public bool NeedsCheck { get; init; }

    /// <summary>The backing file name as stored in the image, or null.</summary>
    public string? BackingFileName { get; init; }

    /// <summary>The backing file name resolved against the image's directory, or null.</summary>
    public string? BackingFilePath { get; init; }

    /// <summary>The backing format when the image records one, or null (then it is probed).</summary>
    public string? BackingFormat { get; init; }
}
