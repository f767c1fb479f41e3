using System.Buffers.Binary;
using System.Text;

namespace Qed.Formats.Qcow2;

/// <summary>
/// What cluster 0 of a qcow2 image holds after the fixed header (QCOW2.md §3): the header extensions (backing format,
/// feature names, external data file name, encryption header pointer, bitmaps) and the backing file name, with QEMU
/// 7.2's open-time rules 24-27 of QCOW2.md §2.3 and its messages.
/// </summary>
/// <remarks>
/// <para>
/// The extension area starts at <c>header_length</c> and ends at <c>backing_file_offset</c>, or at the end of cluster 0
/// without a backing file. Each extension is <c>u32 type, u32 length, data</c>, padded to 8 bytes; type 0 ends the list.
/// As in QEMU (verified), an extension header or data that does not fit before the end of the area is refused
/// (<c>Header extension too large</c>), the end marker included; unknown types are skipped; a known type that appears
/// twice takes its last value.
/// </para>
/// <para>Everything here is parsed from cluster 0, which the caller read whole (at most 2 MiB, the header having passed rule 3).</para>
/// </remarks>
internal sealed record Qcow2Extensions
{
    /// <summary>Ends the extension list.</summary>
    public const uint EndType = 0;

    /// <summary>The backing file's format name (&lt; 16 bytes).</summary>
    public const uint BackingFormatType = 0xE2792ACA;

    /// <summary>Names of feature bits, 48 bytes per entry.</summary>
    public const uint FeatureTableType = 0x6803F857;

    /// <summary>Persistent dirty bitmaps, exactly 24 bytes.</summary>
    public const uint BitmapsType = 0x23852875;

    /// <summary>Where the LUKS header lies, exactly 16 bytes.</summary>
    public const uint CryptoHeaderType = 0x0537BE77;

    /// <summary>The external data file's name.</summary>
    public const uint DataFileType = 0x44415441;

    /// <summary>QEMU keeps the backing format in a 16-byte C string.</summary>
    public const int MaxBackingFormatLength = 15;

    /// <summary>QEMU keeps the backing file name in a 1024-byte C string.</summary>
    public const int MaxBackingNameLength = 1023;

    /// <summary>Bytes of one feature name table entry: kind, bit, 46-byte name.</summary>
    public const int FeatureEntrySize = 48;

    /// <summary>Bytes of a feature name.</summary>
    public const int FeatureNameLength = 46;

    /// <summary>Bytes of the bitmaps extension.</summary>
    public const int BitmapsLength = 24;

    /// <summary>Bytes of the encryption header extension.</summary>
    public const int CryptoHeaderLength = 16;

    /// <summary>Most bitmaps QEMU accepts.</summary>
    public const uint MaxBitmaps = 65535;

    /// <summary>Largest bitmap directory QEMU accepts: 64 MiB - 1 KiB.</summary>
    public const ulong MaxBitmapDirectorySize = 1024UL * MaxBitmaps;

    /// <summary>Autoclear bit 0: the bitmaps extension is consistent.</summary>
    public const ulong AutoclearBitmaps = 1;

    /// <summary>The crypt method whose extension is the LUKS header pointer.</summary>
    public const uint CryptMethodLuks = 2;

    private const int ExtensionHeaderSize = 8;

    /// <summary>The backing format the image records (<c>qcow2</c>, <c>raw</c>, ...), or null when it records none (then it is probed).</summary>
    public string? BackingFormat { get; init; }

    /// <summary>The feature name table, in its order (empty when the image has none).</summary>
    public IReadOnlyList<Qcow2FeatureName> FeatureNames { get; init; } = [];

    /// <summary>The external data file's name as stored (QEMU opens it relative to the current directory), or null.</summary>
    public string? DataFileName { get; init; }

    /// <summary>Where the LUKS header lies (crypt method 2), or null when the extension is absent.</summary>
    public Qcow2CryptoHeader? CryptoHeader { get; init; }

    /// <summary>The bitmaps extension when present and in use (autoclear bit 0 set), else null: QEMU then treats the bitmaps as absent.</summary>
    public Qcow2BitmapsExtension? Bitmaps { get; init; }

    /// <summary>True when a bitmaps extension is present but autoclear bit 0 is clear (QEMU considers its bitmaps inconsistent and ignores them).</summary>
    public bool HasStaleBitmaps { get; init; }

    /// <summary>The types of the extensions this reader does not know, in their order.</summary>
    public IReadOnlyList<uint> UnknownTypes { get; init; } = [];

    /// <summary>The end of the extension area: the backing file name's offset, or the end of cluster 0.</summary>
    public static int AreaEnd(Qcow2Header header) =>
        header.BackingFileOffset != 0 ? (int)header.BackingFileOffset : (int)header.ClusterSize;

    /// <summary>Parses the extensions of <paramref name="cluster0"/> (rule 24) for an image whose header passed rules 1-23.</summary>
    /// <param name="cluster0">The first cluster of the file, zero-padded past the end of the file.</param>
    /// <param name="header">The validated header.</param>
    /// <exception cref="QedFormatException">An extension breaks a rule; the message is QEMU's.</exception>
    public static Qcow2Extensions Parse(ReadOnlySpan<byte> cluster0, Qcow2Header header)
    {
        var result = new Qcow2Extensions();
        var unknown = new List<uint>();
        string? error = Walk(cluster0, header, ref result, unknown);
        if (error is not null)
        {
            throw new QedFormatException(error);
        }
        return result with { UnknownTypes = unknown };
    }

    /// <summary>
    /// The feature names QEMU finds for rule 10's message: the extensions are walked as far as they are well formed and
    /// errors are ignored, so a table that comes before a broken extension still names the bits.
    /// </summary>
    public static IReadOnlyList<Qcow2FeatureName> ReadFeatureNames(ReadOnlySpan<byte> cluster0, Qcow2Header header)
    {
        var result = new Qcow2Extensions();
        Walk(cluster0, header, ref result, unknown: null);
        return result.FeatureNames;
    }

    /// <summary>
    /// Rule 10's message for the unknown incompatible bits <paramref name="mask"/>: the names the table gives them, in
    /// table order (each bit named once), then the bits left unnamed in hex, as QEMU words it.
    /// </summary>
    public static string UnsupportedFeatureMessage(IReadOnlyList<Qcow2FeatureName> names, ulong mask)
    {
        var text = new StringBuilder();
        foreach (var feature in names)
        {
            // QEMU stops at the first entry with an empty name (its table is zero-terminated).
            if (feature.Name.Length == 0)
            {
                break;
            }
            if (feature.Kind == Qcow2FeatureKind.Incompatible && feature.Bit < 64 && (mask & (1UL << feature.Bit)) != 0)
            {
                text.Append(text.Length > 0 ? ", " : "").Append(feature.Name);
                mask &= ~(1UL << feature.Bit);
            }
        }
        if (mask != 0)
        {
            text.Append(text.Length > 0 ? ", " : "").Append("Unknown incompatible feature: ").Append(mask.ToString("x", System.Globalization.CultureInfo.InvariantCulture));
        }
        return "Unsupported qcow2 feature(s): " + text;
    }

    /// <summary>
    /// Rules 26 and 27 after the extensions: refuses a LUKS image without its header pointer (except for metadata-only
    /// opens, as QEMU's info) and a backing name longer than QEMU keeps, then returns the backing file name (up to its
    /// first NUL byte, as QEMU reads it), or null when the image names none.
    /// </summary>
    /// <exception cref="QedFormatException">A rule is broken; the message is QEMU's.</exception>
    public string? ReadBackingName(ReadOnlySpan<byte> cluster0, Qcow2Header header, bool metadataOnly)
    {
        if (header.CryptMethod == CryptMethodLuks && CryptoHeader is null && !metadataOnly)
        {
            throw new QedFormatException($"Missing CRYPTO header for crypt method {header.CryptMethod}");
        }
        if (header.BackingFileOffset == 0)
        {
            return null;
        }
        ulong room = (ulong)header.ClusterSize - header.BackingFileOffset;
        if (header.BackingFileSize > Math.Min(MaxBackingNameLength, room))
        {
            throw new QedFormatException("Backing file name too long");
        }
        var name = cluster0.Slice((int)header.BackingFileOffset, (int)header.BackingFileSize);
        return CString(name) is { Length: > 0 } text ? text : null;
    }

    /// <summary>Walks the area; returns QEMU's message for the first broken rule, or null. Extensions read before it are kept in <paramref name="result"/>.</summary>
    private static string? Walk(ReadOnlySpan<byte> cluster0, Qcow2Header header, ref Qcow2Extensions result, List<uint>? unknown)
    {
        long end = AreaEnd(header);
        long offset = header.HeaderLength;
        while (offset < end)
        {
            // The extension header itself must fit too, the end marker included (QEMU checks before looking at the type).
            if (end - offset < ExtensionHeaderSize)
            {
                return "Header extension too large";
            }
            uint type = BinaryPrimitives.ReadUInt32BigEndian(cluster0[(int)offset..]);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(cluster0[((int)offset + 4)..]);
            offset += ExtensionHeaderSize;
            if (length > end - offset)
            {
                return "Header extension too large";
            }
            var data = cluster0.Slice((int)offset, (int)length);
            switch (type)
            {
                case EndType:
                    return null;
                case BackingFormatType:
                    if (length > MaxBackingFormatLength)
                    {
                        return $"ERROR: ext_backing_format: len={length} too large (>={MaxBackingFormatLength + 1})";
                    }
                    result = result with { BackingFormat = CString(data) };
                    break;
                case FeatureTableType:
                    result = result with { FeatureNames = ParseFeatureNames(data) };
                    break;
                case CryptoHeaderType:
                    if (header.CryptMethod != CryptMethodLuks)
                    {
                        return "CRYPTO header extension only expected with LUKS encryption method";
                    }
                    if (length != CryptoHeaderLength)
                    {
                        return $"CRYPTO header extension size {length}, but expected size {CryptoHeaderLength}";
                    }
                    var crypto = new Qcow2CryptoHeader(BinaryPrimitives.ReadUInt64BigEndian(data), BinaryPrimitives.ReadUInt64BigEndian(data[8..]));
                    if (crypto.Offset % (ulong)header.ClusterSize != 0)
                    {
                        return $"Encryption header offset '{crypto.Offset}' is not a multiple of cluster size '{header.ClusterSize}'";
                    }
                    result = result with { CryptoHeader = crypto };
                    break;
                case BitmapsType:
                    if (length != BitmapsLength)
                    {
                        return "bitmaps_ext: Invalid extension length";
                    }
                    if ((header.AutoclearFeatures & AutoclearBitmaps) == 0)
                    {
                        // Written by a program that did not keep the bitmaps: QEMU ignores them (their clusters leak).
                        result = result with { HasStaleBitmaps = true };
                        break;
                    }
                    if (ParseBitmaps(data, header, out var bitmaps) is { } bitmapError)
                    {
                        return bitmapError;
                    }
                    result = result with { Bitmaps = bitmaps };
                    break;
                case DataFileType:
                    result = result with { DataFileName = CString(data) };
                    break;
                default:
                    unknown?.Add(type);
                    break;
            }
            offset += ((long)length + 7) & ~7L;
        }
        return null;
    }

    private static string? ParseBitmaps(ReadOnlySpan<byte> data, Qcow2Header header, out Qcow2BitmapsExtension bitmaps)
    {
        uint count = BinaryPrimitives.ReadUInt32BigEndian(data);
        uint reserved = BinaryPrimitives.ReadUInt32BigEndian(data[4..]);
        bitmaps = new Qcow2BitmapsExtension(count, BinaryPrimitives.ReadUInt64BigEndian(data[8..]), BinaryPrimitives.ReadUInt64BigEndian(data[16..]));
        if (reserved != 0)
        {
            return "bitmaps_ext: Reserved field is not zero";
        }
        if (count > MaxBitmaps)
        {
            return $"bitmaps_ext: Image has {count} bitmaps, exceeding the QEMU supported maximum of {MaxBitmaps}";
        }
        if (count == 0)
        {
            return "found bitmaps extension with zero bitmaps";
        }
        if (bitmaps.DirectoryOffset % (ulong)header.ClusterSize != 0)
        {
            return "bitmaps_ext: invalid bitmap directory offset";
        }
        if (bitmaps.DirectorySize > MaxBitmapDirectorySize)
        {
            return $"bitmaps_ext: bitmap directory size ({bitmaps.DirectorySize}) exceeds the maximum supported size ({MaxBitmapDirectorySize})";
        }
        return null;
    }

    /// <summary>The table's entries; a last entry cut short by the length reads as zero-padded (QEMU's copy is).</summary>
    private static Qcow2FeatureName[] ParseFeatureNames(ReadOnlySpan<byte> data)
    {
        int count = (data.Length + FeatureEntrySize - 1) / FeatureEntrySize;
        var names = new Qcow2FeatureName[count];
        Span<byte> entry = stackalloc byte[FeatureEntrySize];
        for (int i = 0; i < count; i++)
        {
            entry.Clear();
            var source = data[(i * FeatureEntrySize)..];
            source[..Math.Min(source.Length, FeatureEntrySize)].CopyTo(entry);
            names[i] = new Qcow2FeatureName((Qcow2FeatureKind)entry[0], entry[1], CString(entry.Slice(2, FeatureNameLength)));
        }
        return names;
    }

    /// <summary>The text up to the first NUL byte, as QEMU reads its C strings.</summary>
    private static string CString(ReadOnlySpan<byte> bytes)
    {
        int end = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]);
    }
}

/// <summary>Which feature word a feature name table entry names a bit of.</summary>
internal enum Qcow2FeatureKind : byte
{
    /// <summary>An incompatible feature.</summary>
    Incompatible = 0,

    /// <summary>A compatible feature.</summary>
    Compatible = 1,

    /// <summary>An autoclear feature.</summary>
    Autoclear = 2,
}

/// <summary>One entry of the feature name table.</summary>
internal readonly record struct Qcow2FeatureName(Qcow2FeatureKind Kind, byte Bit, string Name);

/// <summary>The encryption header extension: where the LUKS header lies in the file.</summary>
internal readonly record struct Qcow2CryptoHeader(ulong Offset, ulong Length);

/// <summary>The bitmaps extension: how many bitmaps and where their directory lies.</summary>
internal readonly record struct Qcow2BitmapsExtension(uint Count, ulong DirectorySize, ulong DirectoryOffset);
