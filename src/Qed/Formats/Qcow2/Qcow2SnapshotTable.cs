using System.Buffers.Binary;
using System.Text;
using Qed.IO;

namespace Qed.Formats.Qcow2;

/// <summary>
/// The internal snapshot table of a qcow2 image (QCOW2.md §8), read as QEMU 7.2 reads it at open (rule 28 of §2.3).
/// Reading the active image ignores snapshots; <c>info</c> lists them and <c>check</c> walks their L1 tables.
/// </summary>
/// <remarks>
/// <list type="number">
/// <item>Entries follow each other from <c>snapshots_offset</c>, each starting at the next multiple of 8: a 40-byte fixed
/// part, <c>extra_data_size</c> bytes of extra data (at most 1 KiB: "Too much extra metadata in snapshot table entry N"),
/// the ID string and the name (no terminators).</item>
/// <item>Of the extra data, the first 24 bytes are known: the 64-bit VM state size, the disk size and the instruction
/// count, each only when the extra data reaches that far (else the 32-bit VM state size, the image's size, no count).</item>
/// <item>After each entry the table may not exceed 64 MiB ("Snapshot table is too big").</item>
/// </list>
/// The header's rules 17 and 18 (at most 65,536 entries, aligned offset) come first, so at most 64 MiB plus one entry
/// (about 129 KiB) is ever read, in windows; bytes past the end of the file read as zeros, as in QEMU.
/// </remarks>
internal sealed class Qcow2SnapshotTable
{
    /// <summary>Bytes of an entry's fixed part.</summary>
    public const int FixedSize = 40;

    /// <summary>Bytes of extra data this reader knows (VM state size, disk size, instruction count).</summary>
    public const int KnownExtraSize = 24;

    /// <summary>Most extra data QEMU accepts per entry.</summary>
    public const int MaxExtraSize = 1024;

    /// <summary>Largest table QEMU accepts: 1 KiB per snapshot of the most it allows.</summary>
    public const long MaxTableSize = 1024L * Qcow2Header.MaxSnapshots;

    /// <summary>Extra data a version 3 image must hold (VM state size and disk size); <c>check</c> reports shorter entries.</summary>
    public const int Version3MinExtraSize = 16;

    private const int L1OffsetOffset = 0;
    private const int L1SizeOffset = 8;
    private const int IdSizeOffset = 12;
    private const int NameSizeOffset = 14;
    private const int DateSecondsOffset = 16;
    private const int DateNanosecondsOffset = 20;
    private const int VmClockOffset = 24;
    private const int VmStateSize32Offset = 32;
    private const int ExtraSizeOffset = 36;

    private const int ExtraVmStateOffset = 0;
    private const int ExtraDiskSizeOffset = 8;
    private const int ExtraIcountOffset = 16;

    /// <summary>Bytes read from the file at a time.</summary>
    private const int WindowSize = 64 * 1024;

    private Qcow2SnapshotTable(IReadOnlyList<Qcow2Snapshot> snapshots, ulong offset, long size)
    {
        Snapshots = snapshots;
        Offset = offset;
        Size = size;
    }

    /// <summary>The entries, in table order.</summary>
    public IReadOnlyList<Qcow2Snapshot> Snapshots { get; }

    /// <summary>File offset of the table.</summary>
    public ulong Offset { get; }

    /// <summary>Bytes from the table's start to the end of its last entry's name (its refcounted range; no padding after the last entry).</summary>
    public long Size { get; }

    /// <summary>An image without snapshots.</summary>
    public static Qcow2SnapshotTable Empty { get; } = new([], 0, 0);

    /// <summary>Reads the table the header names; the header passed rules 1-23 (so the count and offset are bounded).</summary>
    /// <exception cref="QedFormatException">An entry breaks a rule; the message is QEMU's.</exception>
    public static async ValueTask<Qcow2SnapshotTable> ReadAsync(FileAccessor file, Qcow2Header header, bool useAsync, CancellationToken cancellationToken)
    {
        if (header.SnapshotCount == 0)
        {
            return Empty;
        }
        if (header.SnapshotCount > Qcow2Header.MaxSnapshots || header.SnapshotsOffset % (ulong)header.ClusterSize != 0 || header.SnapshotsOffset > long.MaxValue - MaxTableSize * 2)
        {
            // Rules 17 and 18 (and a table that could not lie in any file) come first; the check reaches here without them.
            throw new QedFormatException(header.SnapshotCount > Qcow2Header.MaxSnapshots ? "Snapshot table too large" : "Snapshot table offset invalid");
        }
        var reader = new WindowReader(file);
        long start = (long)header.SnapshotsOffset;
        long offset = start;
        var snapshots = new Qcow2Snapshot[header.SnapshotCount];
        byte[] fixedPart = new byte[FixedSize];
        byte[] extra = new byte[KnownExtraSize];
        for (int i = 0; i < snapshots.Length; i++)
        {
            offset = (offset + 7) & ~7L;
            long entryOffset = offset;
            await reader.ReadAsync(fixedPart, offset, useAsync, cancellationToken).ConfigureAwait(false);
            offset += FixedSize;
            uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(ExtraSizeOffset));
            if (extraSize > MaxExtraSize)
            {
                throw new QedFormatException($"Too much extra metadata in snapshot table entry {i}");
            }
            int knownExtra = (int)Math.Min(extraSize, KnownExtraSize);
            Array.Clear(extra);
            await reader.ReadAsync(extra.AsMemory(0, knownExtra), offset, useAsync, cancellationToken).ConfigureAwait(false);
            offset += extraSize;

            int idSize = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(IdSizeOffset));
            int nameSize = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(NameSizeOffset));
            byte[] strings = new byte[idSize + nameSize];
            await reader.ReadAsync(strings, offset, useAsync, cancellationToken).ConfigureAwait(false);
            offset += strings.Length;

            var f = fixedPart.AsSpan();
            snapshots[i] = new Qcow2Snapshot
            {
                EntryOffset = entryOffset,
                L1TableOffset = BinaryPrimitives.ReadUInt64BigEndian(f[L1OffsetOffset..]),
                L1Size = BinaryPrimitives.ReadUInt32BigEndian(f[L1SizeOffset..]),
                Id = CString(strings.AsSpan(0, idSize)),
                Name = CString(strings.AsSpan(idSize, nameSize)),
                DateSeconds = BinaryPrimitives.ReadUInt32BigEndian(f[DateSecondsOffset..]),
                DateNanoseconds = BinaryPrimitives.ReadUInt32BigEndian(f[DateNanosecondsOffset..]),
                VmClockNanoseconds = BinaryPrimitives.ReadUInt64BigEndian(f[VmClockOffset..]),
                ExtraDataSize = extraSize,
                VmStateSize = extraSize >= ExtraVmStateOffset + 8
                    ? BinaryPrimitives.ReadUInt64BigEndian(extra.AsSpan(ExtraVmStateOffset))
                    : BinaryPrimitives.ReadUInt32BigEndian(f[VmStateSize32Offset..]),
                DiskSize = extraSize >= ExtraDiskSizeOffset + 8 ? BinaryPrimitives.ReadUInt64BigEndian(extra.AsSpan(ExtraDiskSizeOffset)) : header.Size,
                InstructionCount = extraSize >= ExtraIcountOffset + 8 ? BinaryPrimitives.ReadUInt64BigEndian(extra.AsSpan(ExtraIcountOffset)) : null,
            };
            if (offset - start > MaxTableSize)
            {
                throw new QedFormatException("Snapshot table is too big");
            }
        }
        return new Qcow2SnapshotTable(snapshots, header.SnapshotsOffset, offset - start);
    }

    /// <summary>The snapshots as <c>info</c> lists them.</summary>
    public IReadOnlyList<ImageSnapshot> Describe() =>
        Snapshots.Select(s => new ImageSnapshot
        {
            Id = s.Id,
            Name = s.Name,
            // QEMU holds these in signed 64-bit fields and prints them so.
            VmStateSize = unchecked((long)s.VmStateSize),
            DateSeconds = s.DateSeconds,
            DateNanoseconds = s.DateNanoseconds,
            VmClockNanoseconds = unchecked((long)s.VmClockNanoseconds),
            InstructionCount = s.InstructionCount is { } count ? unchecked((long)count) : null,
        }).ToArray();

    /// <summary>The text up to the first NUL byte, as QEMU reads its C strings.</summary>
    private static string CString(ReadOnlySpan<byte> bytes)
    {
        int end = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]);
    }

    /// <summary>Serves small sequential reads from one window of the file (zero-padded past its end), so a table of many entries costs few system calls.</summary>
    private sealed class WindowReader(FileAccessor file)
    {
        private byte[] _window = [];
        private long _windowStart = -1;

        public async ValueTask ReadAsync(Memory<byte> destination, long offset, bool useAsync, CancellationToken cancellationToken)
        {
            if (destination.IsEmpty)
            {
                return;
            }
            if (_windowStart < 0 || offset < _windowStart || offset + destination.Length > _windowStart + _window.Length)
            {
                if (_window.Length < Math.Max(WindowSize, destination.Length))
                {
                    _window = new byte[Math.Max(WindowSize, destination.Length)];
                }
                await file.ReadZeroPaddedAsync(_window, offset, useAsync, cancellationToken).ConfigureAwait(false);
                _windowStart = offset;
            }
            _window.AsMemory((int)(offset - _windowStart), destination.Length).CopyTo(destination);
        }
    }
}

/// <summary>One entry of the snapshot table.</summary>
internal sealed record Qcow2Snapshot
{
    /// <summary>File offset of the entry.</summary>
    public long EntryOffset { get; init; }

    /// <summary>File offset of the snapshot's L1 table (not validated here: <c>check</c> reports a bad one).</summary>
    public ulong L1TableOffset { get; init; }

    /// <summary>Entries of the snapshot's L1 table.</summary>
    public uint L1Size { get; init; }

    /// <summary>The ID string.</summary>
    public required string Id { get; init; }

    /// <summary>The name (tag).</summary>
    public required string Name { get; init; }

    /// <summary>Seconds since the epoch when the snapshot was taken.</summary>
    public uint DateSeconds { get; init; }

    /// <summary>The nanoseconds part of the date.</summary>
    public uint DateNanoseconds { get; init; }

    /// <summary>Guest run time at the snapshot in nanoseconds.</summary>
    public ulong VmClockNanoseconds { get; init; }

    /// <summary>Bytes of extra data the entry holds.</summary>
    public uint ExtraDataSize { get; init; }

    /// <summary>Bytes of saved VM state.</summary>
    public ulong VmStateSize { get; init; }

    /// <summary>The virtual disk size at the snapshot (the image's size when the entry does not record it).</summary>
    public ulong DiskSize { get; init; }

    /// <summary>The instruction count, or null when the entry's extra data does not reach it.</summary>
    public ulong? InstructionCount { get; init; }
}
