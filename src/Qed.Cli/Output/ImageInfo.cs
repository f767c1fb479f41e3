using Qed.Formats;

namespace Qed.Cli.Output;

/// <summary>What <c>qed info</c> reports about one image (the fields of qemu-img's ImageInfo that qed's formats fill).</summary>
internal sealed record ImageInfo
{
    /// <summary>The image's file name as given (for backing files: the resolved path).</summary>
    public required string FileName { get; init; }

    /// <summary>The format's name as qemu-img spells it (<c>qed</c>, <c>raw</c>).</summary>
    public required string Format { get; init; }

    /// <summary>Virtual disk size in bytes.</summary>
    public required long VirtualSize { get; init; }

    /// <summary>Bytes the host file system allocated for the file, or null when unknown.</summary>
    public long? ActualSize { get; init; }

    /// <summary>Cluster size, for formats with clusters.</summary>
    public int? ClusterSize { get; init; }

    /// <summary>The need-check bit as it is on disk (qemu-img always says false for QED; see QED-FORMAT.md §10.2).</summary>
    public bool? DirtyFlag { get; init; }

    /// <summary>The backing file name as stored in the header.</summary>
    public string? BackingFileName { get; init; }

    /// <summary>The backing file name resolved against the image's directory.</summary>
    public string? FullBackingFileName { get; init; }

    /// <summary>The backing format when the image records it.</summary>
    public string? BackingFormat { get; init; }

    /// <summary>The format-specific entries, in qemu-img's order (none for QED and raw).</summary>
    public IReadOnlyList<ImageDetail> FormatSpecific { get; init; } = [];

    /// <summary>True when the guest data is encrypted (qemu-img prints <c>encrypted: yes</c>).</summary>
    public bool Encrypted { get; init; }

    /// <summary>The internal snapshots, in the order of the image's snapshot table (qcow2 only).</summary>
    public IReadOnlyList<ImageSnapshot> Snapshots { get; init; } = [];
}
