using System.Buffers.Binary;

namespace Qed.Format;

/// <summary>The 64-byte QED header as an immutable value. <see cref="Parse"/> and <see cref="WriteTo"/> round-trip every field exactly; validation is separate (<see cref="HeaderValidator"/>).</summary>
internal readonly record struct QedHeader
{
    /// <summary>The magic number, "QED\0" when valid.</summary>
    public uint Magic { get; init; }
    /// <summary>Cluster size in bytes.</summary>
    public uint ClusterSize { get; init; }
    /// <summary>Size of the L1 and of every L2 table, in clusters.</summary>
    public uint TableSize { get; init; }
    /// <summary>Clusters reserved for the header area.</summary>
    public uint HeaderSize { get; init; }
    /// <summary>Incompatible feature bits.</summary>
    public QedFeatures Features { get; init; }
    /// <summary>Compatible feature bits (none defined; kept as found).</summary>
    public ulong CompatFeatures { get; init; }
    /// <summary>Auto-clear feature bits (none defined; cleared by a writer).</summary>
    public ulong AutoclearFeatures { get; init; }
    /// <summary>File offset of the L1 table.</summary>
    public ulong L1TableOffset { get; init; }
    /// <summary>Virtual disk size in bytes.</summary>
    public ulong ImageSize { get; init; }
    /// <summary>File offset of the backing file name.</summary>
    public uint BackingFilenameOffset { get; init; }
    /// <summary>Length of the backing file name in bytes.</summary>
    public uint BackingFilenameSize { get; init; }

    /// <summary>True when the backing-file bit is set and the name is not empty (QEMU ignores an empty name).</summary>
    public bool HasBackingFile => (Features & QedFeatures.BackingFile) != 0 && BackingFilenameSize != 0;

    /// <summary>True when the need-check (dirty) bit is set.</summary>
    public bool NeedsCheck => (Features & QedFeatures.NeedCheck) != 0;

    /// <summary>Reads the fields of a header from its first 64 bytes; a shorter span reads as zero-padded, as QEMU does.</summary>
    public static QedHeader Parse(ReadOnlySpan<byte> source)
    {
        Span<byte> padded = stackalloc byte[HeaderLayout.Size];
        padded.Clear();
        source[..Math.Min(source.Length, HeaderLayout.Size)].CopyTo(padded);
        return new QedHeader
        {
            Magic = BinaryPrimitives.ReadUInt32LittleEndian(padded[HeaderLayout.MagicOffset..]),
            ClusterSize = BinaryPrimitives.ReadUInt32LittleEndian(padded[HeaderLayout.ClusterSizeOffset..]),
            TableSize = BinaryPrimitives.ReadUInt32LittleEndian(padded[HeaderLayout.TableSizeOffset..]),
            HeaderSize = BinaryPrimitives.ReadUInt32LittleEndian(padded[HeaderLayout.HeaderSizeOffset..]),
            Features = (QedFeatures)BinaryPrimitives.ReadUInt64LittleEndian(padded[HeaderLayout.FeaturesOffset..]),
            CompatFeatures = BinaryPrimitives.ReadUInt64LittleEndian(padded[HeaderLayout.CompatFeaturesOffset..]),
            AutoclearFeatures = BinaryPrimitives.ReadUInt64LittleEndian(padded[HeaderLayout.AutoclearFeaturesOffset..]),
            L1TableOffset = BinaryPrimitives.ReadUInt64LittleEndian(padded[HeaderLayout.L1TableOffsetOffset..]),
            ImageSize = BinaryPrimitives.ReadUInt64LittleEndian(padded[HeaderLayout.ImageSizeOffset..]),
            BackingFilenameOffset = BinaryPrimitives.ReadUInt32LittleEndian(padded[HeaderLayout.BackingFilenameOffsetOffset..]),
            BackingFilenameSize = BinaryPrimitives.ReadUInt32LittleEndian(padded[HeaderLayout.BackingFilenameSizeOffset..]),
        };
    }

    /// <summary>Writes the 64 header bytes to the start of <paramref name="destination"/>.</summary>
    public void WriteTo(Span<byte> destination)
    {
        if (destination.Length < HeaderLayout.Size)
        {
            throw new ArgumentException($"The destination must hold at least {HeaderLayout.Size} bytes.", nameof(destination));
        }
        BinaryPrimitives.WriteUInt32LittleEndian(destination[HeaderLayout.MagicOffset..], Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[HeaderLayout.ClusterSizeOffset..], ClusterSize);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[HeaderLayout.TableSizeOffset..], TableSize);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[HeaderLayout.HeaderSizeOffset..], HeaderSize);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[HeaderLayout.FeaturesOffset..], (ulong)Features);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[HeaderLayout.CompatFeaturesOffset..], CompatFeatures);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[HeaderLayout.AutoclearFeaturesOffset..], AutoclearFeatures);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[HeaderLayout.L1TableOffsetOffset..], L1TableOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[HeaderLayout.ImageSizeOffset..], ImageSize);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[HeaderLayout.BackingFilenameOffsetOffset..], BackingFilenameOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[HeaderLayout.BackingFilenameSizeOffset..], BackingFilenameSize);
    }

    /// <summary>True when the first bytes of a file carry the QED magic (QEMU's probe checks nothing else).</summary>
    public static bool HasMagic(ReadOnlySpan<byte> source) =>
        source.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(source) == HeaderLayout.Magic;
}
