using System.Globalization;
using System.Text;
using Qed.Formats.Qcow2.Compression;

namespace Qed.Formats.Qcow2.Writer;

/// <summary>
/// What a new qcow2 image looks like: the <c>qemu-img create -f qcow2</c> options, read and checked in QEMU 7.2's order
/// with its messages (QCOW2.md §10.1), so the first mistake gives the message qemu-img would.
/// </summary>
internal sealed record Qcow2CreateSettings
{
    /// <summary>The option names, as qemu-img spells them.</summary>
    public const string ClusterSizeName = "cluster_size";
    public const string CompatName = "compat";
    public const string LazyRefcountsName = "lazy_refcounts";
    public const string RefcountBitsName = "refcount_bits";
    public const string ExtendedL2Name = "extended_l2";
    public const string CompressionTypeName = "compression_type";
    public const string PreallocationName = "preallocation";

    public const int DefaultClusterSize = 65536;
    public const int DefaultRefcountBits = 16;

    /// <summary>Backing file names longer than this are refused (QEMU's limit, QCOW2.md §2.3 rule 27).</summary>
    public const int MaxBackingNameLength = 1023;

    // The smallest cluster that holds extended L2 entries: 32 subclusters of at least 512 bytes.
    private const int MinExtendedL2ClusterSize = 16384;

    /// <summary>Virtual size, rounded up to 512 bytes.</summary>
    public required long Size { get; init; }

    /// <summary>2 (<c>compat=0.10</c>) or 3 (<c>compat=1.1</c>, the default).</summary>
    public int Version { get; init; } = 3;

    /// <summary>log2 of the cluster size, 9 to 21.</summary>
    public int ClusterBits { get; init; } = 16;

    /// <summary>log2 of the refcount width, 0 to 6 (16 bits: 4).</summary>
    public int RefcountOrder { get; init; } = 4;

    /// <summary>Compatible bit 0: writers may postpone refcount updates (this writer never does; the bit is only recorded).</summary>
    public bool LazyRefcounts { get; init; }

    /// <summary>16-byte L2 entries with 32 subclusters each.</summary>
    public bool ExtendedL2 { get; init; }

    /// <summary>How compressed clusters are compressed (zlib unless <c>compression_type=zstd</c>).</summary>
    public Qcow2CompressionType CompressionType { get; init; } = Qcow2CompressionType.Zlib;

    /// <summary>The backing file name, stored verbatim, or null.</summary>
    public string? BackingFile { get; init; }

    /// <summary>The backing format recorded in its header extension, or null.</summary>
    public string? BackingFormat { get; init; }

    public long ClusterSize => 1L << ClusterBits;

    /// <summary>Bytes of one L2 entry (with its subcluster bitmap when extended).</summary>
    public int L2EntrySize => ExtendedL2 ? 16 : 8;

    /// <summary>Entries of one L2 table.</summary>
    public int L2Entries => (int)(ClusterSize / L2EntrySize);

    /// <summary>Guest bytes one L1 entry maps.</summary>
    public long L2Span => (long)L2Entries * ClusterSize;

    /// <summary>Entries of the L1 table: enough to map the whole disk.</summary>
    public int L1Size => (int)((Size + L2Span - 1) / L2Span);

    public int RefcountBits => 1 << RefcountOrder;

    /// <summary>Reads <paramref name="options"/> as QEMU does: unknown keys first, then the values in QEMU's order.</summary>
    /// <exception cref="QedFormatException">A value QEMU refuses, with QEMU's message.</exception>
    /// <exception cref="QedUnsupportedException">An option this writer does not take.</exception>
    public static Qcow2CreateSettings From(ImageCreateOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        // Sizes and numbers come as numbers, the rest as text (the command line reads them so; a library caller must too).
        foreach (string key in options.Settings.Keys)
        {
            if (key is not (ClusterSizeName or RefcountBitsName))
            {
                throw new QedUnsupportedException($"Invalid parameter '{key}'");
            }
        }
        foreach (string key in options.TextSettings.Keys)
        {
            if (key is not (CompatName or LazyRefcountsName or ExtendedL2Name or CompressionTypeName or PreallocationName))
            {
                throw new QedUnsupportedException($"Invalid parameter '{key}'");
            }
        }
        bool lazyRefcounts = Flag(options, LazyRefcountsName);
        bool extendedL2 = Flag(options, ExtendedL2Name);

        // QEMU's option visitor first reads the enumerations, in the order of its fields.
        int version = options.TextSettings.GetValueOrDefault(CompatName, "1.1") switch
        {
            "0.10" or "v2" => 2,
            "1.1" or "v3" => 3,
            var other => throw new QedFormatException($"Parameter 'version' does not accept value '{other}'"),
        };
        string preallocation = options.TextSettings.GetValueOrDefault(PreallocationName, "off");
        if (preallocation is not ("off" or "metadata" or "falloc" or "full"))
        {
            throw new QedFormatException($"Parameter 'preallocation' does not accept value '{preallocation}'");
        }
        var compressionType = options.TextSettings.GetValueOrDefault(CompressionTypeName, "zlib") switch
        {
            "zlib" => Qcow2CompressionType.Zlib,
            "zstd" => Qcow2CompressionType.Zstd,
            var other => throw new QedFormatException($"Parameter 'compression-type' does not accept value '{other}'"),
        };

        // Then qcow2's own checks.
        if (extendedL2 && version < 3)
        {
            throw new QedFormatException("Extended L2 entries are only supported with compatibility level 1.1 and above (use version=v3 or greater)");
        }
        long clusterSize = options.Settings.GetValueOrDefault(ClusterSizeName, DefaultClusterSize);
        if (clusterSize < 1L << Qcow2Header.MinClusterBits || clusterSize > 1L << Qcow2Header.MaxClusterBits || (clusterSize & (clusterSize - 1)) != 0)
        {
            throw new QedFormatException("Cluster size must be a power of two between 512 and 2048k");
        }
        if (extendedL2 && clusterSize < MinExtendedL2ClusterSize)
        {
            throw new QedFormatException($"Extended L2 entries are only supported with cluster sizes of at least {MinExtendedL2ClusterSize} bytes");
        }
        if (preallocation != "off")
        {
            if (options.BackingFile is not null && !extendedL2)
            {
                throw new QedFormatException("Backing file and preallocation can only be used at the same time if extended_l2 is on");
            }
            throw new QedUnsupportedException($"preallocation={preallocation} is not supported (qed writes qcow2 images sparse: preallocation=off)");
        }
        if (options.BackingFormat is not null && options.BackingFile is null)
        {
            throw new QedFormatException("Backing format cannot be used without backing file");
        }
        if (lazyRefcounts && version < 3)
        {
            throw new QedFormatException("Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)");
        }
        // QEMU reads the width as unsigned: a negative value is a huge one.
        ulong refcountBits = unchecked((ulong)options.Settings.GetValueOrDefault(RefcountBitsName, DefaultRefcountBits));
        if (refcountBits == 0 || refcountBits > 64 || (refcountBits & (refcountBits - 1)) != 0)
        {
            throw new QedFormatException("Refcount width must be a power of two and may not exceed 64 bits");
        }
        if (version < 3 && refcountBits != 16)
        {
            throw new QedFormatException("Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)");
        }
        if (version < 3 && compressionType != Qcow2CompressionType.Zlib)
        {
            throw new QedFormatException("Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)");
        }

        long size = options.Size;
        if (size < 0 || size > long.MaxValue - 511)
        {
            throw new QedFormatException(string.Create(CultureInfo.InvariantCulture, $"Invalid image size {size}"));
        }
        size = (size + 511) & ~511L;
        var settings = new Qcow2CreateSettings
        {
            Size = size,
            Version = version,
            ClusterBits = BitLength(clusterSize),
            RefcountOrder = BitLength((long)refcountBits),
            LazyRefcounts = lazyRefcounts,
            ExtendedL2 = extendedL2,
            CompressionType = compressionType,
            BackingFile = options.BackingFile,
            BackingFormat = options.BackingFile is null ? null : options.BackingFormat,
        };
        // The L1 table may not exceed 32 MiB (QCOW2.md §2.3 rule 19).
        if ((size + settings.L2Span - 1) / settings.L2Span > Qcow2Header.MaxL1Bytes / 8)
        {
            throw new QedFormatException("The image size is too large for file format 'qcow2' (try using a larger cluster size)");
        }
        settings.CheckBackingName();
        return settings;
    }

    /// <summary>The backing file name must be at most 1023 bytes and fit in cluster 0 after the header and its extensions.</summary>
    private void CheckBackingName()
    {
        if (BackingFile is null)
        {
            return;
        }
        int length = Encoding.UTF8.GetByteCount(BackingFile);
        string what = $"Could not assign backing file '{BackingFile}' with format '{BackingFormat}'";
        if (length > MaxBackingNameLength)
        {
            throw new QedFormatException($"{what}: Invalid argument");
        }
        if (Qcow2HeaderWriter.BackingNameOffset(this) + length > ClusterSize)
        {
            throw new QedFormatException($"{what}: No space left on device");
        }
    }

    private static bool Flag(ImageCreateOptions options, string name) =>
        options.TextSettings.GetValueOrDefault(name, "off") switch
        {
            "on" or "yes" or "true" or "y" => true,
            "off" or "no" or "false" or "n" => false,
            _ => throw new QedFormatException($"Parameter '{name}' expects 'on' or 'off'"),
        };

    private static int BitLength(long powerOfTwo) => System.Numerics.BitOperations.Log2((ulong)powerOfTwo);
}
