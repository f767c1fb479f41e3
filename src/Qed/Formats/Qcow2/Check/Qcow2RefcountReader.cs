using System.Buffers.Binary;
using System.Globalization;
using Qed.IO;

namespace Qed.Formats.Qcow2.Check;

/// <summary>
/// Looks up the refcounts stored in a qcow2 image (QCOW2.md §7): refcount table, then refcount block, entries of
/// <c>2^refcount_order</c> bits (1, 2 and 4 bits packed from the least significant bit, wider ones big-endian).
/// </summary>
/// <remarks>
/// Behaves as QEMU's lookup does, since the check's findings depend on it: an index past the table or a zero table
/// entry is refcount 0; the table entry's low 9 bits are ignored; an unaligned block is a corruption reported once
/// (<see cref="CorruptionReport"/>) and every lookup under it fails; blocks past the end of the file read as zeros.
/// A few recent blocks are cached: the comparison walks the clusters in order, the COPIED pass looks up at random.
/// </remarks>
internal sealed class Qcow2RefcountReader
{
    /// <summary>Bits of a refcount table entry that hold the block offset (the low 9 are reserved).</summary>
    public const ulong TableOffsetMask = 0xFFFF_FFFF_FFFF_FE00;

    private const int CachedBlocks = 16;

    private readonly FileAccessor _file;
    private readonly ulong[] _table;
    private readonly int _clusterBits;
    private readonly int _refcountOrder;
    private readonly int _blockBits;
    private readonly long _fileLength;
    private readonly Dictionary<ulong, byte[]> _blocks = [];
    private byte[]? _empty;

    private Qcow2RefcountReader(FileAccessor file, ulong[] table, int clusterBits, int refcountOrder, long fileLength)
    {
        _file = file;
        _table = table;
        _clusterBits = clusterBits;
        _refcountOrder = refcountOrder;
        // Refcounts per block = cs * 8 / bits = 2^(cb + 3 - order).
        _blockBits = clusterBits + 3 - refcountOrder;
        _fileLength = fileLength;
    }

    /// <summary>The refcount table's entries as stored (reserved bits included).</summary>
    public ReadOnlySpan<ulong> Table => _table;

    /// <summary>QEMU's one-time corruption notice for the first unaligned block a lookup met, or null; later ones are suppressed as QEMU does.</summary>
    public string? CorruptionReport { get; private set; }

    /// <summary>Log2 of the refcounts one block holds.</summary>
    public int BlockBits => _blockBits;

    /// <summary>Reads the refcount table (<paramref name="header"/> passed rules 15 and 16, so it is at most 8 MiB; bytes past the end of the file are zeros).</summary>
    public static async ValueTask<Qcow2RefcountReader> LoadAsync(FileAccessor file, Qcow2Header header, long fileLength, bool useAsync, CancellationToken cancellationToken)
    {
        int bytes = checked((int)(header.RefcountTableClusters * header.ClusterSize));
        var table = new ulong[bytes / 8];
        if (bytes > 0)
        {
            byte[] raw = new byte[bytes];
            await ReadAsync(file, raw, (long)header.RefcountTableOffset, fileLength, useAsync, cancellationToken).ConfigureAwait(false);
            for (int i = 0; i < table.Length; i++)
            {
                table[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
            }
        }
        return new Qcow2RefcountReader(file, table, (int)header.ClusterBits, (int)header.RefcountOrder, fileLength);
    }

    /// <summary>
    /// The block holding the refcounts of table index <paramref name="index"/> (below the table length): an all-zero block
    /// for an empty entry, null when the lookup fails.
    /// </summary>
    public async ValueTask<byte[]?> GetBlockAsync(long index, bool useAsync, CancellationToken cancellationToken)
    {
        ulong offset = _table[index] & TableOffsetMask;
        if (offset == 0)
        {
            return _empty ??= new byte[1 << _clusterBits];
        }
        if ((offset & ((1UL << _clusterBits) - 1)) != 0)
        {
            CorruptionReport ??= string.Create(CultureInfo.InvariantCulture,
                $"qcow2: Image is corrupt: Refblock offset 0x{offset:x} unaligned (reftable index: {Hex(index)}); further non-fatal corruption events will be suppressed");
            return null;
        }
        if (offset > (ulong)(long.MaxValue - (1L << _clusterBits)))
        {
            // Past what a block request may address: QEMU's read fails (EIO) rather than reading zeros.
            return null;
        }
        if (_blocks.TryGetValue(offset, out byte[]? cached))
        {
            return cached;
        }
        byte[] block = new byte[1 << _clusterBits];
        await ReadAsync(_file, block, (long)offset, _fileLength, useAsync, cancellationToken).ConfigureAwait(false);
        if (_blocks.Count >= CachedBlocks)
        {
            _blocks.Clear();
        }
        _blocks.Add(offset, block);
        return block;
    }

    /// <summary>Entry <paramref name="index"/> of a refcount block of width <c>2^order</c> bits.</summary>
    public static ulong Decode(ReadOnlySpan<byte> block, long index, int order)
    {
        switch (order)
        {
            case < 3:
                int bits = 1 << order;
                long bit = index * bits;
                return (ulong)(block[(int)(bit >> 3)] >> (int)(bit & 7)) & ((1UL << bits) - 1);
            case 3:
                return block[(int)index];
            case 4:
                return BinaryPrimitives.ReadUInt16BigEndian(block[(int)(index * 2)..]);
            case 5:
                return BinaryPrimitives.ReadUInt32BigEndian(block[(int)(index * 4)..]);
            default:
                return BinaryPrimitives.ReadUInt64BigEndian(block[(int)(index * 8)..]);
        }
    }

    /// <summary>Reads <paramref name="buffer"/> at <paramref name="offset"/>, zeros for what lies past the end of the file (nothing is read there).</summary>
    internal static ValueTask ReadAsync(FileAccessor file, Memory<byte> buffer, long offset, long fileLength, bool useAsync, CancellationToken cancellationToken)
    {
        if (offset >= fileLength)
        {
            buffer.Span.Clear();
            return ValueTask.CompletedTask;
        }
        return file.ReadZeroPaddedAsync(buffer, offset, useAsync, cancellationToken);
    }

    // C's %#x: "0" for zero, "0x..." otherwise.
    private static string Hex(long value) => value == 0 ? "0" : string.Create(CultureInfo.InvariantCulture, $"0x{value:x}");
}
