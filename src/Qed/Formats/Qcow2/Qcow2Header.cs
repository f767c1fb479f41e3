using System.Buffers.Binary;

namespace Qed.Formats.Qcow2;

/// <summary>
/// The fixed part of a qcow2 header (QCOW2.md §2.1, big-endian), parsed from the first bytes of the file and checked
/// against QEMU 7.2's open-time rules 1-23 of QCOW2.md §2.3 in QEMU's order, so the first broken rule decides the message.
/// </summary>
/// <remarks>
/// Nothing is allocated from a field before its rule has passed (the L1 table is at most 4 Mi entries, the refcount
/// table 8 MiB, the snapshot table 65,536 entries). Header extensions (rule 24 on) are read by their own parser.
/// What QEMU accepts is accepted: tables beyond the end of the file, a header length that is not a multiple of 8.
/// </remarks>
internal sealed record Qcow2Header
{
    /// <summary>"QFI" and 0xFB.</summary>
    public const uint Magic = 0x514649FB;

    /// <summary>Bytes of a version 2 header; version 3 fields follow up to <see cref="HeaderLength"/>.</summary>
    public const int Version2Length = 72;

    /// <summary>The shortest version 3 header (up to and including header_length).</summary>
    public const int Version3MinLength = 104;

    /// <summary>Bytes to read from the start of the file to parse any header (QEMU writes 112).</summary>
    public const int ReadLength = 112;

    public const int MinClusterBits = 9;
    public const int MaxClusterBits = 21;
    public const int MaxRefcountOrder = 6;
    public const long MaxRefcountTableBytes = 8L * 1024 * 1024;
    public const int MaxSnapshots = 65536;
    public const long MaxL1Bytes = 32L * 1024 * 1024;

    // Offsets of the fields (QCOW2.md §2.1).
    private const int VersionOffset = 4;
    private const int BackingFileOffsetOffset = 8;
    private const int BackingFileSizeOffset = 16;
    private const int ClusterBitsOffset = 20;
    private const int SizeOffset = 24;
    private const int CryptMethodOffset = 32;
    private const int L1SizeOffset = 36;
    private const int L1TableOffsetOffset = 40;
    private const int RefcountTableOffsetOffset = 48;
    private const int RefcountTableClustersOffset = 56;
    private const int SnapshotCountOffset = 60;
    private const int SnapshotsOffsetOffset = 64;
    private const int IncompatibleFeaturesOffset = 72;
    private const int CompatibleFeaturesOffset = 80;
    private const int AutoclearFeaturesOffset = 88;
    private const int RefcountOrderOffset = 96;
    private const int HeaderLengthOffset = 100;
    private const int CompressionTypeOffset = 104;

    public uint Version { get; init; }
    public ulong BackingFileOffset { get; init; }
    public uint BackingFileSize { get; init; }
    public uint ClusterBits { get; init; }
    public ulong Size { get; init; }
    public uint CryptMethod { get; init; }
    public uint L1Size { get; init; }
    public ulong L1TableOffset { get; init; }
    public ulong RefcountTableOffset { get; init; }
    public uint RefcountTableClusters { get; init; }
    public uint SnapshotCount { get; init; }
    public ulong SnapshotsOffset { get; init; }
    public Qcow2IncompatibleFeatures IncompatibleFeatures { get; init; }
    public ulong CompatibleFeatures { get; init; }
    public ulong AutoclearFeatures { get; init; }
    public uint RefcountOrder { get; init; }
    public uint HeaderLength { get; init; }

    /// <summary>0 zlib (deflate), 1 zstd; present on disk only when <see cref="HeaderLength"/> is above 104.</summary>
    public byte CompressionType { get; init; }

    /// <summary>Bytes per cluster (valid once <see cref="Validate"/> passed).</summary>
    public long ClusterSize => 1L << (int)ClusterBits;

    /// <summary>True when L2 entries are 16 bytes with 32 subclusters each.</summary>
    public bool ExtendedL2 => (IncompatibleFeatures & Qcow2IncompatibleFeatures.ExtendedL2) != 0;

    /// <summary>Bytes of one L2 entry.</summary>
    public int L2EntrySize => ExtendedL2 ? 16 : 8;

    /// <summary>Entries of one L2 table.</summary>
    public long L2Entries => ClusterSize / L2EntrySize;

    /// <summary>Width of one refcount in bits.</summary>
    public int RefcountBits => 1 << (int)RefcountOrder;

    /// <summary>True when the first bytes of a file carry the qcow2 magic and a version of at least 2 (QCOW2.md §2.4).</summary>
    public static bool IsQcow2(ReadOnlySpan<byte> start) =>
        start.Length >= 8 && BinaryPrimitives.ReadUInt32BigEndian(start) == Magic && BinaryPrimitives.ReadUInt32BigEndian(start[VersionOffset..]) >= 2;

    /// <summary>Reads the header fields from the first bytes of the file (zero-padded to <see cref="ReadLength"/> when shorter); checks nothing.</summary>
    /// <exception cref="QedFormatException">The magic is not qcow2's (rule 1).</exception>
    public static Qcow2Header Parse(ReadOnlySpan<byte> start)
    {
        Span<byte> b = stackalloc byte[ReadLength];
        b.Clear();
        start[..Math.Min(start.Length, ReadLength)].CopyTo(b);
        if (BinaryPrimitives.ReadUInt32BigEndian(b) != Magic)
        {
            throw new QedFormatException("Image is not in qcow2 format");
        }
        uint version = BinaryPrimitives.ReadUInt32BigEndian(b[VersionOffset..]);
        bool v3 = version >= 3;
        uint headerLength = v3 ? BinaryPrimitives.ReadUInt32BigEndian(b[HeaderLengthOffset..]) : Version2Length;
        return new Qcow2Header
        {
            Version = version,
            BackingFileOffset = BinaryPrimitives.ReadUInt64BigEndian(b[BackingFileOffsetOffset..]),
            BackingFileSize = BinaryPrimitives.ReadUInt32BigEndian(b[BackingFileSizeOffset..]),
            ClusterBits = BinaryPrimitives.ReadUInt32BigEndian(b[ClusterBitsOffset..]),
            Size = BinaryPrimitives.ReadUInt64BigEndian(b[SizeOffset..]),
            CryptMethod = BinaryPrimitives.ReadUInt32BigEndian(b[CryptMethodOffset..]),
            L1Size = BinaryPrimitives.ReadUInt32BigEndian(b[L1SizeOffset..]),
            L1TableOffset = BinaryPrimitives.ReadUInt64BigEndian(b[L1TableOffsetOffset..]),
            RefcountTableOffset = BinaryPrimitives.ReadUInt64BigEndian(b[RefcountTableOffsetOffset..]),
            RefcountTableClusters = BinaryPrimitives.ReadUInt32BigEndian(b[RefcountTableClustersOffset..]),
            SnapshotCount = BinaryPrimitives.ReadUInt32BigEndian(b[SnapshotCountOffset..]),
            SnapshotsOffset = BinaryPrimitives.ReadUInt64BigEndian(b[SnapshotsOffsetOffset..]),
            // Version 2 implies no features, 16-bit refcounts and a 72-byte header.
            IncompatibleFeatures = v3 ? (Qcow2IncompatibleFeatures)BinaryPrimitives.ReadUInt64BigEndian(b[IncompatibleFeaturesOffset..]) : 0,
            CompatibleFeatures = v3 ? BinaryPrimitives.ReadUInt64BigEndian(b[CompatibleFeaturesOffset..]) : 0,
            AutoclearFeatures = v3 ? BinaryPrimitives.ReadUInt64BigEndian(b[AutoclearFeaturesOffset..]) : 0,
            RefcountOrder = v3 ? BinaryPrimitives.ReadUInt32BigEndian(b[RefcountOrderOffset..]) : 4,
            HeaderLength = headerLength,
            CompressionType = v3 && headerLength > CompressionTypeOffset ? b[CompressionTypeOffset] : (byte)0,
        };
    }

    /// <summary>Applies rules 2-23 of QCOW2.md §2.3 in QEMU's order; the message is QEMU's.</summary>
    /// <param name="forWriting">The image is opened read-write (rule 11: a corrupt image opens only read-only).</param>
    /// <param name="forCheck">The open is for <c>check</c>, which skips rules 14, 17 and 18 and reports them itself.</param>
    /// <exception cref="QedFormatException">A field breaks a rule.</exception>
    /// <exception cref="QedUnsupportedException">The version, cluster size, a feature or the encryption method is not supported.</exception>
    public void Validate(bool forWriting, bool forCheck = false)
    {
        if (Version is not (2 or 3))
        {
            throw Unsupported($"Unsupported qcow2 version {Version}");
        }
        if (ClusterBits is < MinClusterBits or > MaxClusterBits)
        {
            throw Unsupported($"Unsupported cluster size: 2^{ClusterBits}");
        }
        if (Version == 3 && HeaderLength < Version3MinLength)
        {
            throw Invalid("qcow2 header too short");
        }
        if (HeaderLength > ClusterSize)
        {
            throw Invalid("qcow2 header exceeds cluster size");
        }
        if (BackingFileOffset > (ulong)ClusterSize)
        {
            throw Invalid("Invalid backing file offset");
        }
        if (CompressionType > 1)
        {
            throw Unsupported($"qcow2: unknown compression type: {CompressionType}");
        }
        bool compressionBit = (IncompatibleFeatures & Qcow2IncompatibleFeatures.CompressionType) != 0;
        if (CompressionType == 0 && compressionBit)
        {
            throw Invalid("qcow2: Compression type incompatible feature bit must not be set");
        }
        if (CompressionType != 0 && !compressionBit)
        {
            throw Invalid("qcow2: Compression type incompatible feature bit must be set");
        }
        ulong unknown = (ulong)(IncompatibleFeatures & ~Qcow2IncompatibleFeatures.Known);
        if (unknown != 0)
        {
            throw Unsupported($"Unsupported qcow2 feature(s): Unknown incompatible feature: {unknown:x}");
        }
        if (forWriting && (IncompatibleFeatures & Qcow2IncompatibleFeatures.Corrupt) != 0)
        {
            throw Invalid("qcow2: Image is corrupt; cannot be opened read/write");
        }
        if (ExtendedL2 && ClusterSize / 32 < 512)
        {
            throw Unsupported($"Unsupported subcluster size: {ClusterSize / 32}");
        }
        if (RefcountOrder > MaxRefcountOrder)
        {
            throw Invalid("Reference count entry width too large; may not exceed 64 bits");
        }
        if (!forCheck && RefcountTableClusters == 0)
        {
            throw Invalid("Image does not contain a reference count table");
        }
        long refcountTableBytes = (long)RefcountTableClusters * ClusterSize;
        if ((ulong)RefcountTableClusters * (ulong)ClusterSize > MaxRefcountTableBytes)
        {
            throw Invalid("Reference count table too large");
        }
        if (!IsValidTableOffset(RefcountTableOffset, refcountTableBytes))
        {
            throw Invalid("Reference count table offset invalid");
        }
        if (!forCheck && SnapshotCount > MaxSnapshots)
        {
            throw Invalid("Snapshot table too large");
        }
        if (!forCheck && SnapshotCount > 0 && SnapshotsOffset % (ulong)ClusterSize != 0)
        {
            throw Invalid("Snapshot table offset invalid");
        }
        if ((ulong)L1Size * 8 > MaxL1Bytes)
        {
            throw Invalid("Active L1 table too large");
        }
        if (!IsValidTableOffset(L1TableOffset, (long)L1Size * 8))
        {
            throw Invalid("Active L1 table offset invalid");
        }
        // Guest bytes one L1 entry covers: at most 2^21 / 8 entries of 2^21 bytes = 2^39, so no overflow below.
        ulong perL1Entry = (ulong)L2Entries * (ulong)ClusterSize;
        ulong l1Needed = Size / perL1Entry + (Size % perL1Entry != 0 ? 1UL : 0UL);
        if (l1Needed > int.MaxValue)
        {
            throw Invalid("Image is too big");
        }
        if (L1Size < l1Needed)
        {
            throw Invalid("L1 table is too small");
        }
        if (CryptMethod > 2)
        {
            throw Unsupported($"Unsupported encryption method {CryptMethod}");
        }
    }

    /// <summary>A table offset QEMU accepts: cluster aligned, and the table ends below 2^63 (it may lie beyond the end of the file).</summary>
    private bool IsValidTableOffset(ulong offset, long length) =>
        offset % (ulong)ClusterSize == 0 && offset <= long.MaxValue && (ulong)length <= long.MaxValue - offset;

    private static QedFormatException Invalid(string message) => new(message);

    private static QedUnsupportedException Unsupported(string message) => new(message);
}

/// <summary>The incompatible feature bits of a qcow2 header (QCOW2.md §4).</summary>
[Flags]
internal enum Qcow2IncompatibleFeatures : ulong
{
    /// <summary>Refcounts may be stale: the image was not closed cleanly (lazy refcounts).</summary>
    Dirty = 1 << 0,

    /// <summary>QEMU found corruption; the image opens read-only.</summary>
    Corrupt = 1 << 1,

    /// <summary>Guest data lives in an external data file.</summary>
    ExternalDataFile = 1 << 2,

    /// <summary>The compression type field is not zlib.</summary>
    CompressionType = 1 << 3,

    /// <summary>L2 entries are 16 bytes with subcluster bitmaps.</summary>
    ExtendedL2 = 1 << 4,

    /// <summary>Every bit this reader knows.</summary>
    Known = Dirty | Corrupt | ExternalDataFile | CompressionType | ExtendedL2,
}
