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

    /// <summary>What qemu-img shows under "Format specific information" (JSON <c>format-specific</c>), in its order; empty for QED and raw.</summary>
    public IReadOnlyList<ImageDetail> FormatSpecific { get; init; } = [];

    /// <summary>True when the guest data is encrypted (qcow2 AES or LUKS): the metadata can be described, the data cannot be read.</summary>
    public bool Encrypted { get; init; }

    /// <summary>The internal snapshots the image holds (qcow2), in the order of its snapshot table; empty for QED and raw.</summary>
    public IReadOnlyList<ImageSnapshot> Snapshots { get; init; } = [];
}

/// <summary>One internal snapshot as <c>qemu-img info</c> lists it (qcow2 snapshot table entry, QCOW2.md §8).</summary>
public sealed record ImageSnapshot
{
    /// <summary>The snapshot's ID string (<c>1</c>, <c>2</c>, ...).</summary>
    public required string Id { get; init; }

    /// <summary>The snapshot's name (tag).</summary>
    public required string Name { get; init; }

    /// <summary>Bytes of saved VM state (0 for a disk-only snapshot).</summary>
    public long VmStateSize { get; init; }

    /// <summary>When the snapshot was taken: seconds since the Unix epoch.</summary>
    public long DateSeconds { get; init; }

    /// <summary>When the snapshot was taken: the nanoseconds part.</summary>
    public long DateNanoseconds { get; init; }

    /// <summary>The guest's run time at the snapshot, in nanoseconds.</summary>
    public long VmClockNanoseconds { get; init; }

    /// <summary>The instruction count recorded with the snapshot, or null when the entry has none.</summary>
    public long? InstructionCount { get; init; }
}

/// <summary>One entry of the format-specific part of <c>qemu-img info</c> (for qcow2: <c>compat</c>, <c>lazy-refcounts</c>, ...).</summary>
/// <param name="Name">qemu-img's JSON key (<c>refcount-bits</c>); the human report shows it with spaces for dashes. Ignored for the elements of a list.</param>
/// <param name="Value">The value as qemu-img prints it (<c>1.1</c>, <c>false</c>, <c>16</c>); empty for objects and lists.</param>
/// <param name="Kind">How JSON writes the value: a string, a boolean, a number, or an object or list of <see cref="Children"/>.</param>
public sealed record ImageDetail(string Name, string Value, ImageDetailKind Kind)
{
    /// <summary>The members of an object or the elements of a list, in qemu-img's order (qcow2 <c>bitmaps</c>, LUKS <c>encrypt</c>); empty for scalars.</summary>
    public IReadOnlyList<ImageDetail> Children { get; init; } = [];
}

/// <summary>How an <see cref="ImageDetail"/> is written in JSON.</summary>
public enum ImageDetailKind
{
    /// <summary>A JSON string.</summary>
    Text,

    /// <summary>A JSON <c>true</c> or <c>false</c>.</summary>
    Boolean,

    /// <summary>A JSON number.</summary>
    Number,

    /// <summary>A JSON object whose members are the detail's <see cref="ImageDetail.Children"/>.</summary>
    Object,

    /// <summary>A JSON array whose elements are the detail's <see cref="ImageDetail.Children"/>.</summary>
    List,
}
