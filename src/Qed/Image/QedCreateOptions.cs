using Qed.Format;

namespace Qed.Image;

/// <summary>What <see cref="QedImage.Create"/> writes: the options of <c>qemu-img create -f qed</c>.</summary>
public sealed record QedCreateOptions
{
    /// <summary>Virtual size in bytes; rounded up to a multiple of 512 as qemu-img does.</summary>
    public required long Size { get; init; }

    /// <summary>Cluster size in bytes (power of two, 4 KiB to 64 MiB).</summary>
    public int ClusterSize { get; init; } = QedGeometry.DefaultClusterSize;

    /// <summary>Table size in clusters (power of two, 1 to 16).</summary>
    public int TableSize { get; init; } = QedGeometry.DefaultTableSize;

    /// <summary>Backing file name, stored verbatim; relative names resolve against the image's directory.</summary>
    public string? BackingFile { get; init; }

    /// <summary>Backing format; only <c>raw</c> is recorded (as the no-probe bit).</summary>
    public string? BackingFormat { get; init; }
}
