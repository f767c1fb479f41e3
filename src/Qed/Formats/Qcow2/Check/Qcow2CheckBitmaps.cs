using System.Buffers.Binary;

namespace Qed.Formats.Qcow2.Check;

/// <summary>
/// Counts the references of persistent dirty bitmaps (QCOW2.md §9): the bitmap directory, each bitmap's table and the
/// data clusters it points to, as QEMU's check does when the bitmaps extension is in use.
/// </summary>
/// <remarks>
/// A directory or table that QEMU would not load is one corruption and stops the check (Invalid argument), as in QEMU:
/// an entry that does not fit, more or fewer entries than the extension says, extra data, or an entry breaking the
/// bitmap constraints (table offset and size, granularity 9-31, flags, name length, type, 512 MiB of bitmap at most);
/// a table entry with reserved bits or an unaligned offset.
/// </remarks>
internal static class Qcow2CheckBitmaps
{
    private const long MaxDirectorySize = 1024L * 65535;
    private const int DirectoryEntrySize = 24;
    private const uint MaxTableEntries = 0x800_0000;
    private const long MaxBitmapBytes = 0x2000_0000;
    private const int MinGranularityBits = 9;
    private const int MaxGranularityBits = 31;
    private const uint InUseFlag = 1;
    private const uint KnownFlags = 3;
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

    /// <summary>Counts the bitmaps' clusters through <paramref name="checker"/>.</summary>
    public static async ValueTask CountAsync(Qcow2Checker checker, bool useAsync, CancellationToken cancellationToken)
    {
        var layout = checker.Layout;
        if (layout.BitmapCount == 0)
        {
            return;
        }
        checker.Count(layout.BitmapDirectoryOffset, (long)Math.Min(layout.BitmapDirectorySize, long.MaxValue));
        var tables = await LoadDirectoryAsync(checker, useAsync, cancellationToken).ConfigureAwait(false);
        if (tables is null)
        {
            checker.AddCorruption();
            throw Qcow2Checker.Abort(Errno.InvalidArgument);
        }
        foreach (var (offset, size) in tables)
        {
            checker.Count(offset, size * 8L);
            byte[] table = new byte[size * 8L];
            await Qcow2RefcountReader.ReadAsync(checker.File, table, (long)offset, checker.FileLength, useAsync, cancellationToken).ConfigureAwait(false);
            var entries = new ulong[size];
            for (int i = 0; i < entries.Length; i++)
            {
                entries[i] = BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(i * 8));
                if (!IsValidTableEntry(entries[i], checker.ClusterSize))
                {
                    checker.AddCorruption();
                    throw Qcow2Checker.Abort(Errno.InvalidArgument);
                }
            }
            foreach (ulong entry in entries)
            {
                ulong data = entry & TableEntryOffsetMask;
                if (data != 0)
                {
                    checker.Count(data, checker.ClusterSize);
                }
            }
        }
    }

    /// <summary>The (offset, entries) of each bitmap's table, or null when QEMU would refuse the directory.</summary>
    private static async ValueTask<List<(ulong Offset, uint Size)>?> LoadDirectoryAsync(Qcow2Checker checker, bool useAsync, CancellationToken cancellationToken)
    {
        var layout = checker.Layout;
        ulong size = layout.BitmapDirectorySize;
        if (size == 0 || size > MaxDirectorySize || layout.BitmapDirectoryOffset > long.MaxValue)
        {
            return null;
        }
        byte[] directory = new byte[size];
        await Qcow2RefcountReader.ReadAsync(checker.File, directory, (long)layout.BitmapDirectoryOffset, checker.FileLength, useAsync, cancellationToken).ConfigureAwait(false);
        var tables = new List<(ulong, uint)>();
        int position = 0;
        while (position < directory.Length)
        {
            if (position + DirectoryEntrySize > directory.Length || tables.Count + 1 > layout.BitmapCount)
            {
                return null;
            }
            var entry = directory.AsSpan(position);
            ulong tableOffset = BinaryPrimitives.ReadUInt64BigEndian(entry[TableOffsetField..]);
            uint tableSize = BinaryPrimitives.ReadUInt32BigEndian(entry[TableSizeField..]);
            uint flags = BinaryPrimitives.ReadUInt32BigEndian(entry[FlagsField..]);
            byte type = entry[TypeField];
            byte granularity = entry[GranularityField];
            int nameSize = BinaryPrimitives.ReadUInt16BigEndian(entry[NameSizeField..]);
            uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(entry[ExtraDataSizeField..]);
            long next = position + ((DirectoryEntrySize + (long)extraSize + nameSize + 7) & ~7L);
            if (next > directory.Length || extraSize != 0)
            {
                return null;
            }
            bool broken = tableSize == 0 || tableOffset == 0 || tableOffset % (ulong)checker.ClusterSize != 0
                || tableSize > MaxTableEntries || granularity > MaxGranularityBits || granularity < MinGranularityBits
                || (flags & ~KnownFlags) != 0 || nameSize > MaxNameSize || type != DirtyTrackingType;
            if (broken)
            {
                return null;
            }
            long bitmapBytes = tableSize * checker.ClusterSize;
            if (bitmapBytes > MaxBitmapBytes)
            {
                return null;
            }
            // A bitmap not in use must cover the whole disk.
            long diskSize = (long)Math.Min(checker.VirtualSize, long.MaxValue);
            if ((flags & InUseFlag) == 0 && (Int128)diskSize > ((Int128)bitmapBytes * 8 << granularity))
            {
                return null;
            }
            tables.Add((tableOffset, tableSize));
            position = (int)next;
        }
        return tables.Count == layout.BitmapCount ? tables : null;
    }

    private static bool IsValidTableEntry(ulong entry, long clusterSize)
    {
        if ((entry & TableEntryReservedMask) != 0)
        {
            return false;
        }
        ulong offset = entry & TableEntryOffsetMask;
        return offset == 0 || ((entry & TableEntryAllOnes) == 0 && offset % (ulong)clusterSize == 0);
    }
}
