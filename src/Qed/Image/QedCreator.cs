using System.Globalization;
using System.Text;
using Qed.Format;
using Qed.IO;

namespace Qed.Image;

/// <summary>Builds and writes a new, empty QED image exactly as QEMU lays it out (QED-FORMAT.md §3.2).</summary>
internal static class QedCreator
{
    /// <summary>Validates the options in qemu-img's order and returns the header and backing name to write.</summary>
    public static (QedHeader Header, byte[] BackingName) Build(QedCreateOptions options)
    {
        CheckGeometry(options.ClusterSize, options.TableSize);
        var geometry = new QedGeometry(options.ClusterSize, options.TableSize);
        long size = RoundUpToSector(options.Size);
        if (size > geometry.MaxImageSize)
        {
            throw new QedFormatException(string.Create(CultureInfo.InvariantCulture,
                $"QED image size must be a non-zero multiple of cluster size and less than {geometry.MaxImageSize} bytes (size {size})"));
        }
        if (size > 0 && geometry.QemuMaxImageSize == 0)
        {
            throw new QedFormatException(string.Create(CultureInfo.InvariantCulture,
                $"QED image size must be 0 with cluster_size {options.ClusterSize} and table_size {options.TableSize}: QEMU computes this geometry's maximum size as 0 (it wraps past 2^64), so it could not open a larger image"));
        }

        byte[] name = options.BackingFile is null ? [] : Encoding.UTF8.GetBytes(options.BackingFile);
        if (name.Length > HeaderLayout.MaxBackingNameLength)
        {
            throw new QedFormatException($"Backing file name is too long ({name.Length} bytes): QEMU cannot open names of {HeaderLayout.MaxBackingNameLength + 1} bytes or more");
        }
        if (HeaderLayout.Size + name.Length > options.ClusterSize)
        {
            throw new QedFormatException($"Backing file name is too long ({name.Length} bytes): it does not fit in the {options.ClusterSize}-byte header cluster after the {HeaderLayout.Size}-byte header");
        }

        var features = QedFeatures.None;
        if (options.BackingFile is not null)
        {
            features |= QedFeatures.BackingFile;
            if (options.BackingFormat == "raw")
            {
                features |= QedFeatures.BackingFormatNoProbe;
            }
        }
        var header = new QedHeader
        {
            Magic = HeaderLayout.Magic,
            ClusterSize = (uint)options.ClusterSize,
            TableSize = (uint)options.TableSize,
            HeaderSize = 1,
            Features = features,
            L1TableOffset = (ulong)options.ClusterSize,
            ImageSize = (ulong)size,
            BackingFilenameOffset = options.BackingFile is null ? 0u : HeaderLayout.Size,
            BackingFilenameSize = (uint)name.Length,
        };
        return (header, name);
    }

    /// <summary>Refuses a cluster or table size QED does not allow, in qemu-img's order and words; takes <c>long</c> so that callers holding wider values (command-line options) get the same message.</summary>
    /// <exception cref="QedFormatException">Either size is not allowed.</exception>
    internal static void CheckGeometry(long clusterSize, long tableSize)
    {
        if (!QedGeometry.IsValidClusterSize(clusterSize))
        {
            throw new QedFormatException($"QED cluster size must be within range [{QedGeometry.MinClusterSize}, {QedGeometry.MaxClusterSize}] and power of 2 (cluster_size {clusterSize})");
        }
        if (!QedGeometry.IsValidTableSize(tableSize))
        {
            throw new QedFormatException($"QED table size must be within range [{QedGeometry.MinTableSize}, {QedGeometry.MaxTableSize}] and power of 2 (table_size {tableSize})");
        }
    }

    /// <summary>Rounds a requested size up to 512 bytes, as qemu-img does (1000 becomes 1024).</summary>
    public static long RoundUpToSector(long size)
    {
        if (size < 0 || size > long.MaxValue - 511)
        {
            throw new QedFormatException(string.Create(CultureInfo.InvariantCulture, $"Invalid image size {size}"));
        }
        return (size + 511) & ~511L;
    }

    /// <summary>Writes the new image; an existing file is locked before it is emptied, so one that QEMU or qed has open is refused (<see cref="QedLockException"/>) and left as it was.</summary>
    public static async ValueTask CreateAsync(string path, QedCreateOptions options, bool useAsync, CancellationToken cancellationToken)
    {
        var (header, name) = Build(options);
        using var file = HandleFileAccessor.Create(path);
        byte[] start = new byte[HeaderLayout.Size + name.Length];
        header.WriteTo(start);
        name.CopyTo(start, HeaderLayout.Size);
        await file.WriteAsync(start, 0, useAsync, cancellationToken).ConfigureAwait(false);
        // The rest of the header cluster and the empty L1 table read as zeros: a hole is byte-identical to QEMU's explicit zeros.
        file.SetLength((long)options.ClusterSize * (1 + options.TableSize));
        await file.FlushAsync(useAsync, cancellationToken).ConfigureAwait(false);
    }
}
