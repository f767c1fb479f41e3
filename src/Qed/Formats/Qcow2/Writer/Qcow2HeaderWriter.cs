using System.Buffers.Binary;
using System.Text;
using Qed.Formats.Qcow2.Compression;

namespace Qed.Formats.Qcow2.Writer;

/// <summary>
/// Serializes cluster 0 of a new image as QEMU lays it out (QCOW2.md §2.1, §3, §10.2): the header (72 bytes for version
/// 2, 112 for version 3), the backing-format extension, the feature name table (version 3 with clusters above 4 KiB), the
/// end marker, then the backing file name.
/// </summary>
internal static class Qcow2HeaderWriter
{
    /// <summary>QEMU's header length for version 3.</summary>
    public const int Version3Length = 112;

    private const uint BackingFormatExtension = 0xE2792ACA;
    private const uint FeatureTableExtension = 0x6803F857;
    private const int ExtensionHeaderLength = 8;
    private const int EndMarkerLength = 8;
    private const int FeatureNameLength = 46;
    private const int FeatureEntryLength = 48;
    // QEMU writes the table only when clusters are larger than this (QCOW2.md §3).
    private const int FeatureTableMinClusterSize = 4096;
    private const ulong LazyRefcountsBit = 1;

    /// <summary>Every feature QEMU 7.2 names in its table: (kind, bit, name); kinds 0 incompatible, 1 compatible, 2 autoclear.</summary>
    private static readonly (byte Kind, byte Bit, string Name)[] s_featureNames =
    [
        (0, 0, "dirty bit"),
        (0, 1, "corrupt bit"),
        (0, 2, "external data file"),
        (0, 3, "compression type"),
        (0, 4, "extended L2 entries"),
        (1, 0, "lazy refcounts"),
        (2, 0, "bitmaps"),
        (2, 1, "raw external data"),
    ];

    /// <summary>Where the tables are: what the header points to.</summary>
    public readonly record struct Tables(long L1Offset, long RefcountTableOffset, int RefcountTableClusters);

    /// <summary>The offset in cluster 0 where the backing file name goes: after the header and its extensions.</summary>
    public static int BackingNameOffset(Qcow2CreateSettings settings)
    {
        int offset = settings.Version >= 3 ? Version3Length : Qcow2Header.Version2Length;
        if (settings.BackingFormat is not null)
        {
            offset += ExtensionHeaderLength + Pad8(Encoding.UTF8.GetByteCount(settings.BackingFormat));
        }
        if (HasFeatureTable(settings))
        {
            offset += ExtensionHeaderLength + s_featureNames.Length * FeatureEntryLength;
        }
        return offset + EndMarkerLength;
    }

    /// <summary>Cluster 0's meaningful bytes (the rest of the cluster is zeros).</summary>
    public static byte[] Build(Qcow2CreateSettings settings, Tables tables)
    {
        byte[] name = settings.BackingFile is null ? [] : Encoding.UTF8.GetBytes(settings.BackingFile);
        int nameOffset = BackingNameOffset(settings);
        byte[] b = new byte[nameOffset + name.Length];
        var span = b.AsSpan();
        BinaryPrimitives.WriteUInt32BigEndian(span, Qcow2Header.Magic);
        BinaryPrimitives.WriteUInt32BigEndian(span[4..], (uint)settings.Version);
        if (name.Length > 0)
        {
            BinaryPrimitives.WriteUInt64BigEndian(span[8..], (ulong)nameOffset);
            BinaryPrimitives.WriteUInt32BigEndian(span[16..], (uint)name.Length);
        }
        BinaryPrimitives.WriteUInt32BigEndian(span[20..], (uint)settings.ClusterBits);
        BinaryPrimitives.WriteUInt64BigEndian(span[24..], (ulong)settings.Size);
        // crypt_method 0
        BinaryPrimitives.WriteUInt32BigEndian(span[36..], (uint)settings.L1Size);
        BinaryPrimitives.WriteUInt64BigEndian(span[40..], (ulong)tables.L1Offset);
        BinaryPrimitives.WriteUInt64BigEndian(span[48..], (ulong)tables.RefcountTableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(span[56..], (uint)tables.RefcountTableClusters);
        // nb_snapshots 0, snapshots_offset 0
        int position;
        if (settings.Version >= 3)
        {
            var incompatible = (settings.ExtendedL2 ? Qcow2IncompatibleFeatures.ExtendedL2 : 0)
                | (settings.CompressionType != Qcow2CompressionType.Zlib ? Qcow2IncompatibleFeatures.CompressionType : 0);
            BinaryPrimitives.WriteUInt64BigEndian(span[72..], (ulong)incompatible);
            BinaryPrimitives.WriteUInt64BigEndian(span[80..], settings.LazyRefcounts ? LazyRefcountsBit : 0);
            // autoclear 0
            BinaryPrimitives.WriteUInt32BigEndian(span[96..], (uint)settings.RefcountOrder);
            BinaryPrimitives.WriteUInt32BigEndian(span[100..], Version3Length);
            span[104] = (byte)settings.CompressionType;
            position = Version3Length;
        }
        else
        {
            position = Qcow2Header.Version2Length;
        }
        if (settings.BackingFormat is not null)
        {
            byte[] format = Encoding.UTF8.GetBytes(settings.BackingFormat);
            position = WriteExtension(span, position, BackingFormatExtension, format);
        }
        if (HasFeatureTable(settings))
        {
            byte[] table = new byte[s_featureNames.Length * FeatureEntryLength];
            for (int i = 0; i < s_featureNames.Length; i++)
            {
                var (kind, bit, featureName) = s_featureNames[i];
                table[i * FeatureEntryLength] = kind;
                table[i * FeatureEntryLength + 1] = bit;
                Encoding.ASCII.GetBytes(featureName, table.AsSpan(i * FeatureEntryLength + 2, FeatureNameLength));
            }
            position = WriteExtension(span, position, FeatureTableExtension, table);
        }
        // The end marker is 8 zero bytes, already there.
        position += EndMarkerLength;
        name.CopyTo(span[position..]);
        return b;
    }

    private static bool HasFeatureTable(Qcow2CreateSettings settings) => settings.Version >= 3 && settings.ClusterSize > FeatureTableMinClusterSize;

    private static int WriteExtension(Span<byte> b, int position, uint type, ReadOnlySpan<byte> data)
    {
        BinaryPrimitives.WriteUInt32BigEndian(b[position..], type);
        BinaryPrimitives.WriteUInt32BigEndian(b[(position + 4)..], (uint)data.Length);
        data.CopyTo(b[(position + ExtensionHeaderLength)..]);
        return position + ExtensionHeaderLength + Pad8(data.Length);
    }

    private static int Pad8(int length) => (length + 7) & ~7;
}
