using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Qed.Check;
using Qed.IO;

namespace Qed.Formats.Qcow2.Check;

/// <summary>One snapshot as the check sees it: where its L1 table is, and its id and name for the messages.</summary>
internal readonly record struct Qcow2CheckSnapshot(ulong L1Offset, uint L1Size, string Id, string Name);

/// <summary>
/// Reads the snapshot table for a check (QCOW2.md §8) as QEMU's check does: the open skipped it, so its size and offset
/// are judged here, and a table that cannot be read stops the check (no report, <c>Check failed: REASON</c>).
/// </summary>
/// <remarks>
/// 1. More than 65,536 entries: <c>ERROR snapshot table too large</c> (File too large); an offset that is not cluster
///    aligned or a table reaching past 2^63: <c>ERROR snapshot table offset invalid</c> (Invalid argument). Both are
///    judged even when there are no snapshots.
/// 2. Each entry: 40 fixed bytes at an 8-byte boundary, extra data (at most 1 KiB), id, name. The whole table is at
///    most 64 MiB. Bytes past the end of the file read as zeros, as in QEMU.
/// 3. On a version 3 image, an entry with less than 16 bytes of extra data is one corruption.
/// Nothing is allocated from a count before it passed its limit.
/// </remarks>
internal static class Qcow2CheckSnapshots
{
    private const int MaxSnapshots = 65536;
    private const int EntryHeaderSize = 40;
    private const int MaxExtraData = 1024;
    private const long MaxTableBytes = 1024L * MaxSnapshots;
    private const int Version3MinExtraData = 16;

    // Fields of an entry (QCOW2.md §8).
    private const int L1OffsetField = 0;
    private const int L1SizeField = 8;
    private const int IdSizeField = 12;
    private const int NameSizeField = 14;
    private const int ExtraDataSizeField = 36;

    /// <summary>What reading the table gave.</summary>
    public sealed record Result(IReadOnlyList<Qcow2CheckSnapshot> Snapshots, long TableSize, long Corruptions, long CheckErrors, string? AbortReason);

    /// <summary>Reads the table named by <paramref name="header"/>, passing QEMU's messages to <paramref name="log"/>.</summary>
    public static async ValueTask<Result> ReadAsync(FileAccessor file, Qcow2Header header, long fileLength, Action<CheckMessage> log, bool useAsync, CancellationToken cancellationToken)
    {
        uint count = header.SnapshotCount;
        ulong tableOffset = header.SnapshotsOffset;
        if (count > MaxSnapshots)
        {
            log(new(CheckMessageKind.Error, "ERROR snapshot table too large"));
            log(new(CheckMessageKind.Plain, string.Create(CultureInfo.InvariantCulture,
                $"You can force-remove all {count - MaxSnapshots} overhanging snapshots with qemu-img check -r all")));
            return new Result([], 0, 0, 1, Errno.FileTooLarge);
        }
        if ((ulong)long.MaxValue - (ulong)count * EntryHeaderSize < tableOffset || tableOffset % (ulong)header.ClusterSize != 0)
        {
            log(new(CheckMessageKind.Error, "ERROR snapshot table offset invalid"));
            return new Result([], 0, 0, 1, Errno.InvalidArgument);
        }
        if (count == 0)
        {
            return new Result([], 0, 0, 0, null);
        }

        var snapshots = new List<Qcow2CheckSnapshot>((int)count);
        var extraSizes = new List<uint>((int)count);
        long offset = (long)tableOffset;
        long tableLength = 0;
        byte[] entry = new byte[EntryHeaderSize];
        for (int i = 0; i < count; i++)
        {
            offset = (offset + 7) & ~7L;
            await Qcow2RefcountReader.ReadAsync(file, entry, offset, fileLength, useAsync, cancellationToken).ConfigureAwait(false);
            offset += EntryHeaderSize;
            ulong l1Offset = BinaryPrimitives.ReadUInt64BigEndian(entry.AsSpan(L1OffsetField));
            uint l1Size = BinaryPrimitives.ReadUInt32BigEndian(entry.AsSpan(L1SizeField));
            int idSize = BinaryPrimitives.ReadUInt16BigEndian(entry.AsSpan(IdSizeField));
            int nameSize = BinaryPrimitives.ReadUInt16BigEndian(entry.AsSpan(NameSizeField));
            uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(entry.AsSpan(ExtraDataSizeField));
            if (extraSize > MaxExtraData)
            {
                log(new(CheckMessageKind.Error, string.Create(CultureInfo.InvariantCulture,
                    $"ERROR failed to read the snapshot table: Too much extra metadata in snapshot table entry {i}")));
                log(new(CheckMessageKind.Plain, "You can force-remove this extra metadata with qemu-img check -r all"));
                return new Result([], 0, 0, 1, Errno.FileTooLarge);
            }
            // The known extra data (VM state size, disk size, icount) plays no part in the check: skip it all.
            offset += extraSize;
            string id = await ReadNameAsync(file, offset, idSize, fileLength, useAsync, cancellationToken).ConfigureAwait(false);
            offset += idSize;
            string name = await ReadNameAsync(file, offset, nameSize, fileLength, useAsync, cancellationToken).ConfigureAwait(false);
            offset += nameSize;
            tableLength += EntryHeaderSize + extraSize + idSize + nameSize;
            if (tableLength > MaxTableBytes || offset - (long)tableOffset > int.MaxValue)
            {
                log(new(CheckMessageKind.Error, "ERROR failed to read the snapshot table: Snapshot table is too big"));
                log(new(CheckMessageKind.Plain, string.Create(CultureInfo.InvariantCulture,
                    $"You can force-remove all {count - i} overhanging snapshots with qemu-img check -r all")));
                return new Result([], 0, 0, 1, Errno.FileTooLarge);
            }
            snapshots.Add(new Qcow2CheckSnapshot(l1Offset, l1Size, id, name));
            extraSizes.Add(extraSize);
        }

        long corruptions = 0;
        if (header.Version >= 3)
        {
            for (int i = 0; i < extraSizes.Count; i++)
            {
                if (extraSizes[i] < Version3MinExtraData)
                {
                    log(new(CheckMessageKind.Plain, string.Create(CultureInfo.InvariantCulture, $"ERROR snapshot table entry {i} is incomplete")));
                    corruptions++;
                }
            }
        }
        return new Result(snapshots, offset - (long)tableOffset, corruptions, 0, null);
    }

    /// <summary>An id or name as QEMU prints it with <c>%s</c>: up to the first NUL byte.</summary>
    private static async ValueTask<string> ReadNameAsync(FileAccessor file, long offset, int size, long fileLength, bool useAsync, CancellationToken cancellationToken)
    {
        if (size == 0)
        {
            return "";
        }
        byte[] bytes = new byte[size];
        await Qcow2RefcountReader.ReadAsync(file, bytes, offset, fileLength, useAsync, cancellationToken).ConfigureAwait(false);
        int end = Array.IndexOf(bytes, (byte)0);
        return Encoding.UTF8.GetString(bytes, 0, end < 0 ? size : end);
    }
}
