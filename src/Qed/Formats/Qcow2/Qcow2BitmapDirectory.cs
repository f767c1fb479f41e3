using System.Buffers.Binary;
using System.Text;
using Qed.IO;

namespace Qed.Formats.Qcow2;

/// <summary>
/// The persistent-bitmap directory (QCOW2.md §9) read with QEMU's rules. QEMU loads the bitmaps at every open of an
/// image whose bitmaps extension is in use (autoclear bit 0) and refuses the open when they break a rule, so opens here
/// (info and check included) refuse the same images with the same words.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>Entries are walked from the directory's start while they begin inside it: a fixed part or a name that does not
/// fit is <c>Broken bitmap directory</c>; an entry beyond the extension's count, fewer entries at the end, or extra data
/// are refused by name.</item>
/// <item>Each entry meets QEMU's constraints: a non-zero, cluster-aligned table of 1 to 2^27 entries and at most 512 MiB
/// of bitmap, granularity 2^9 to 2^31, no unknown flag, a name of at most 1023 bytes, type 1 (dirty tracking), and,
/// unless the bitmap is in use, enough bits to cover the whole disk.</item>
/// <item>Each bitmap is then created under its name (a second one of that name is refused, unless in use); one not in
/// use has its table read: no entry with reserved bits or an unaligned cluster, exactly the clusters the disk needs at
/// that granularity.</item>
/// </list>
/// Everything read past the end of the file reads as zeros, as QEMU reads it.
/// </remarks>
internal static class Qcow2BitmapDirectory
{
    /// <summary>Largest table, in entries.</summary>
    internal const uint MaxTableEntries = 0x800_0000;
    /// <summary>Largest bitmap QEMU holds, in bytes of table clusters.</summary>
    internal const long MaxBitmapBytes = 0x2000_0000;
    internal const uint InUseFlag = 1;
    internal const uint AutoFlag = 2;
    private const uint KnownFlags = InUseFlag | AutoFlag;
    private const int EntryFixedSize = 24;
    private const int MinGranularityBits = 9;
    private const int MaxGranularityBits = 31;
    private const int MaxNameSize = 1023;
    private const byte DirtyTrackingType = 1;
    private const ulong TableEntryReservedMask = 0xFF00_0000_0000_01FE;
    private const ulong TableEntryOffsetMask = 0x00FF_FFFF_FFFF_FE00;
    private const ulong TableEntryAllOnes = 1;

    // Fields of a directory entry.
    private const int TableOffsetField = 0;
    private const int TableSizeField = 8;
    private const int FlagsField = 12;
    private const int TypeField = 16;
    private const int GranularityField = 17;
    private const int NameSizeField = 18;
    private const int ExtraDataSizeField = 20;

    /// <summary>
    /// Reads and validates the directory and the tables of the bitmaps not in use, as QEMU's open does; no bitmaps when
    /// the extension is absent (or stale: the autoclear bit is clear).
    /// </summary>
    /// <exception cref="QedFormatException">A rule is broken; QEMU's message.</exception>
    public static async ValueTask<IReadOnlyList<Qcow2BitmapEntry>> ReadAsync(FileAccessor file, Qcow2Extensions extensions, Qcow2Header header,
        bool useAsync, CancellationToken cancellationToken)
    {
        if (extensions.Bitmaps is not { } bitmaps)
        {
            return [];
        }
        if (bitmaps.DirectorySize == 0)
        {
            throw new QedFormatException("Requested bitmap directory size is zero");
        }
        // The extension's rules bound the size (64 MiB - 1 KiB) and align the offset; an offset past any file reads zeros.
        byte[] directory = new byte[bitmaps.DirectorySize];
        if (bitmaps.DirectoryOffset <= long.MaxValue - bitmaps.DirectorySize)
        {
            await file.ReadZeroPaddedAsync(directory, (long)bitmaps.DirectoryOffset, useAsync, cancellationToken).ConfigureAwait(false);
        }
        var entries = Parse(directory, bitmaps.Count, header.ClusterSize, header.Size);

        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in entries)
        {
            bool inUse = (entry.Flags & InUseFlag) != 0;
            if (!names.Add(entry.Name))
            {
                if (inUse)
                {
                    continue;
                }
                throw new QedFormatException($"Bitmap already exists: {entry.Name}");
            }
            if (!inUse)
            {
                await LoadTableAsync(file, entry, header, useAsync, cancellationToken).ConfigureAwait(false);
            }
        }
        return entries;
    }

    /// <summary>The entries of <paramref name="directory"/> (the extension counts <paramref name="count"/>), checked by QEMU's directory rules.</summary>
    /// <exception cref="QedFormatException">A rule is broken; QEMU's message.</exception>
    internal static List<Qcow2BitmapEntry> Parse(ReadOnlySpan<byte> directory, uint count, long clusterSize, ulong virtualSize)
    {
        var entries = new List<Qcow2BitmapEntry>();
        int position = 0;
        while (position < directory.Length)
        {
            if (directory.Length - position < EntryFixedSize)
            {
                throw Broken();
            }
            if (entries.Count + 1 > count)
            {
                throw new QedFormatException("More bitmaps found than specified in header extension");
            }
            var entry = directory[position..];
            int nameSize = BinaryPrimitives.ReadUInt16BigEndian(entry[NameSizeField..]);
            uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(entry[ExtraDataSizeField..]);
            long size = (EntryFixedSize + (long)extraSize + nameSize + 7) & ~7L;
            if (size > directory.Length - position)
            {
                throw Broken();
            }
            if (extraSize != 0)
            {
                throw new QedFormatException("Bitmap extra data is not supported");
            }
            var parsed = new Qcow2BitmapEntry(
                CName(entry.Slice(EntryFixedSize, nameSize)),
                BinaryPrimitives.ReadUInt64BigEndian(entry[TableOffsetField..]),
                BinaryPrimitives.ReadUInt32BigEndian(entry[TableSizeField..]),
                BinaryPrimitives.ReadUInt32BigEndian(entry[FlagsField..]),
                entry[GranularityField]);
            if (!MeetsConstraints(parsed, entry[TypeField], nameSize, clusterSize, virtualSize))
            {
                throw new QedFormatException($"Bitmap '{parsed.Name}' doesn't satisfy the constraints");
            }
            entries.Add(parsed);
            position += (int)size;
        }
        if (entries.Count != count)
        {
            throw new QedFormatException("Less bitmaps found than specified in header extension");
        }
        return entries;
    }

    /// <summary>
    /// The <paramref name="size"/> entries of the bitmap table at <paramref name="offset"/> (zeros past the end of the
    /// file), or null when one has reserved bits or names an unaligned cluster (QEMU's rules).
    /// </summary>
    internal static async ValueTask<ulong[]?> ReadTableAsync(FileAccessor file, ulong offset, uint size, long clusterSize, bool useAsync, CancellationToken cancellationToken)
    {
        // At most 512 MiB of bitmap (the entry's constraints): 1 Mi entries (8 MiB) with 512-byte clusters, fewer with larger ones.
        byte[] table = new byte[size * 8L];
        if (offset <= (ulong)(long.MaxValue - table.Length))
        {
            await file.ReadZeroPaddedAsync(table, (long)offset, useAsync, cancellationToken).ConfigureAwait(false);
        }
        var entries = new ulong[size];
        for (int i = 0; i < entries.Length; i++)
        {
            entries[i] = BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(i * 8));
            if (!IsValidTableEntry(entries[i], clusterSize))
            {
                return null;
            }
        }
        return entries;
    }

    /// <summary>True when a table entry has no reserved bit and, when it names a cluster, names an aligned one without the all-ones flag.</summary>
    private static bool IsValidTableEntry(ulong entry, long clusterSize)
    {
        if ((entry & TableEntryReservedMask) != 0)
        {
            return false;
        }
        ulong offset = entry & TableEntryOffsetMask;
        return offset == 0 || ((entry & TableEntryAllOnes) == 0 && offset % (ulong)clusterSize == 0);
    }

    /// <summary>The data cluster a valid table entry names, or 0.</summary>
    internal static ulong DataOffset(ulong entry) => entry & TableEntryOffsetMask;

    private static bool MeetsConstraints(Qcow2BitmapEntry entry, byte type, int nameSize, long clusterSize, ulong virtualSize)
    {
        bool fits = entry.TableSize != 0 && entry.TableOffset != 0 && entry.TableOffset % (ulong)clusterSize == 0
            && entry.TableSize <= MaxTableEntries && entry.GranularityBits is >= MinGranularityBits and <= MaxGranularityBits
            && (entry.Flags & ~KnownFlags) == 0 && nameSize <= MaxNameSize && type == DirtyTrackingType;
        if (!fits)
        {
            return false;
        }
        long bitmapBytes = entry.TableSize * clusterSize;
        if (bitmapBytes > MaxBitmapBytes)
        {
            return false;
        }
        // A bitmap not in use must cover the whole disk (one in use may be stale after a resize).
        return (entry.Flags & InUseFlag) != 0 || (Int128)virtualSize <= ((Int128)bitmapBytes * 8 << entry.GranularityBits);
    }

    /// <summary>Reads a bitmap's table and holds it to QEMU's rules (the entries, then the size the disk needs).</summary>
    private static async ValueTask LoadTableAsync(FileAccessor file, Qcow2BitmapEntry entry, Qcow2Header header, bool useAsync, CancellationToken cancellationToken)
    {
        if (await ReadTableAsync(file, entry.TableOffset, entry.TableSize, header.ClusterSize, useAsync, cancellationToken).ConfigureAwait(false) is null)
        {
            throw new QedFormatException($"Could not read bitmap_table table from image for bitmap '{entry.Name}': Invalid argument");
        }
        // One bit per granule of the disk, in whole clusters.
        ulong granules = (header.Size >> entry.GranularityBits) + ((header.Size & ((1UL << entry.GranularityBits) - 1)) != 0 ? 1UL : 0);
        ulong bytes = (granules + 7) / 8;
        ulong clusters = (bytes + (ulong)header.ClusterSize - 1) / (ulong)header.ClusterSize;
        if (clusters != entry.TableSize)
        {
            throw new QedFormatException($"Could not read bitmap '{entry.Name}' from image: Invalid argument");
        }
    }

    private static QedFormatException Broken() => new("Broken bitmap directory");

    /// <summary>The name as QEMU prints it: the bytes up to the first NUL.</summary>
    private static string CName(ReadOnlySpan<byte> field)
    {
        int end = field.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? field : field[..end]);
    }
}

/// <summary>One entry of the bitmap directory.</summary>
/// <param name="Name">The bitmap's name (up to its first NUL byte).</param>
/// <param name="TableOffset">Where its table starts.</param>
/// <param name="TableSize">Entries in its table.</param>
/// <param name="Flags">In use (bit 0), auto (bit 1).</param>
/// <param name="GranularityBits">log2 of the bytes one bit covers.</param>
internal readonly record struct Qcow2BitmapEntry(string Name, ulong TableOffset, uint TableSize, uint Flags, byte GranularityBits);
