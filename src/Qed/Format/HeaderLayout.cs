namespace Qed.Format;

/// <summary>Byte offsets and lengths of the fields of the 64-byte QED header (all little-endian).</summary>
internal static class HeaderLayout
{
    public const int MagicOffset = 0;
    public const int ClusterSizeOffset = 4;
    public const int TableSizeOffset = 8;
    public const int HeaderSizeOffset = 12;
    public const int FeaturesOffset = 16;
    public const int CompatFeaturesOffset = 24;
    public const int AutoclearFeaturesOffset = 32;
    public const int L1TableOffsetOffset = 40;
    public const int ImageSizeOffset = 48;
    public const int BackingFilenameOffsetOffset = 56;
    public const int BackingFilenameSizeOffset = 60;

    /// <summary>Length of the packed header structure.</summary>
    public const int Size = 64;

    /// <summary>QEMU rewrites the whole first sector when it updates the header in place, preserving bytes 64..511.</summary>
    public const int SectorSize = 512;

    /// <summary>"QED\0" read as a little-endian u32.</summary>
    public const uint Magic = 0x00444551;

    /// <summary>QEMU reads backing names into a PATH_MAX buffer: names of this length or more cannot be opened.</summary>
    public const int MaxBackingNameLength = 4095;
}
