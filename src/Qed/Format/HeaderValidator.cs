using System.Globalization;

namespace Qed.Format;

/// <summary>Enforces the open-time rules of QED-FORMAT.md §2.1 in QEMU's order, so that the first broken rule decides the message.</summary>
/// <remarks>Messages start with QEMU's wording and add the field, its value and where it lives in the header.</remarks>
internal static class HeaderValidator
{
    /// <summary>Checks every header field against the file length and returns the geometry it describes.</summary>
    /// <exception cref="QedFormatException">A field breaks a rule.</exception>
    /// <exception cref="QedUnsupportedException">Unknown incompatible feature bits are set.</exception>
    public static QedGeometry Validate(in QedHeader header, long fileLength)
    {
        if (header.Magic != HeaderLayout.Magic)
        {
            throw new QedFormatException($"Image not in QED format (magic 0x{header.Magic:x8} at offset 0, expected 0x{HeaderLayout.Magic:x8})");
        }
        ulong unknown = (ulong)header.Features & ~(ulong)QedFeatures.Known;
        if (unknown != 0)
        {
            throw new QedUnsupportedException(string.Create(CultureInfo.InvariantCulture, $"Unsupported QED features: {unknown:x}"));
        }
        if (!QedGeometry.IsValidClusterSize(header.ClusterSize))
        {
            throw Invalid("QED cluster size is invalid", "cluster_size", header.ClusterSize, HeaderLayout.ClusterSizeOffset);
        }
        if (!QedGeometry.IsValidTableSize(header.TableSize))
        {
            throw Invalid("QED table size is invalid", "table_size", header.TableSize, HeaderLayout.TableSizeOffset);
        }
        var geometry = new QedGeometry((int)header.ClusterSize, (int)header.TableSize);
        if (header.ImageSize % 512 != 0 || header.ImageSize > (ulong)geometry.MaxImageSize)
        {
            throw Invalid("QED image size is invalid", "image_size", header.ImageSize, HeaderLayout.ImageSizeOffset);
        }
        ulong headerBytes = (ulong)header.HeaderSize * header.ClusterSize;
        ulong fileSize = (ulong)OffsetRules.FileSize(fileLength, geometry);
        if (!OffsetRules.IsValidTable(header.L1TableOffset, geometry, headerBytes, fileSize))
        {
            throw new QedFormatException(string.Create(CultureInfo.InvariantCulture,
                $"QED table offset is invalid (l1_table_offset 0x{header.L1TableOffset:x} at offset {HeaderLayout.L1TableOffsetOffset}; header_size {header.HeaderSize}, file length {fileLength})"));
        }
        if (header.HeaderSize > uint.MaxValue / header.ClusterSize)
        {
            throw Invalid("QED header size is too large", "header_size", header.HeaderSize, HeaderLayout.HeaderSizeOffset);
        }
        if ((header.Features & QedFeatures.BackingFile) != 0)
        {
            if ((ulong)header.BackingFilenameOffset + header.BackingFilenameSize > headerBytes)
            {
                throw new QedFormatException(string.Create(CultureInfo.InvariantCulture,
                    $"QED backing filename offset is invalid (backing_filename_offset {header.BackingFilenameOffset} + backing_filename_size {header.BackingFilenameSize} exceeds the {headerBytes}-byte header area)"));
            }
            if (header.BackingFilenameSize > HeaderLayout.MaxBackingNameLength)
            {
                throw Invalid("Failed to read backing filename", "backing_filename_size", header.BackingFilenameSize, HeaderLayout.BackingFilenameSizeOffset);
            }
        }
        return geometry;
    }

    private static QedFormatException Invalid(string qemuText, string field, ulong value, int offset) =>
        new(string.Create(CultureInfo.InvariantCulture, $"{qemuText} ({field} {value} at offset {offset})"));
}
