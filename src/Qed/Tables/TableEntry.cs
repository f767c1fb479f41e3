using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Qed.Tables;

/// <summary>Reads and writes the little-endian u64 entries of an L1 or L2 table held as its on-disk bytes.</summary>
/// <remarks>
/// Tables stay in their disk representation so that a changed block can be written without conversion.
/// Entries are 8-byte aligned inside the array, so each read and write is a single atomic access:
/// a concurrent reader sees either the old or the new value of an entry, never a torn one.
/// </remarks>
internal static class TableEntry
{
    /// <summary>An L2 entry meaning "unallocated": read from the backing file.</summary>
    public const ulong Unallocated = 0;
    /// <summary>An L2 entry meaning "zero cluster": reads as zeros without consulting the backing file.</summary>
    public const ulong Zero = 1;

    /// <summary>Entries per 512-byte block: the unit QEMU writes table updates in.</summary>
    public const int EntriesPerBlock = 512 / sizeof(ulong);

    public static ulong Read(byte[] table, int index)
    {
        ulong raw = Volatile.Read(ref Unsafe.As<byte, ulong>(ref table[index * sizeof(ulong)]));
        return BitConverter.IsLittleEndian ? raw : BinaryPrimitives.ReverseEndianness(raw);
    }

    public static void Write(byte[] table, int index, ulong value)
    {
        ulong raw = BitConverter.IsLittleEndian ? value : BinaryPrimitives.ReverseEndianness(value);
        Volatile.Write(ref Unsafe.As<byte, ulong>(ref table[index * sizeof(ulong)]), raw);
    }
}
