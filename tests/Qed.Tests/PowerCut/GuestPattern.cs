using System.Buffers.Binary;

namespace Qed.Tests.PowerCut;

/// <summary>
/// Guest data that names its origin: every 8-byte word holds a marker, the id of the request that wrote it and its own
/// guest offset, so a sector read back after a crash says which write it came from and whether it landed in the right place.
/// </summary>
internal static class GuestPattern
{
    private const ulong Marker = 0xa5UL << 56;
    private const int IdShift = 40;
    private const ulong WordMask = (1UL << IdShift) - 1;

    /// <summary>Fills <paramref name="destination"/> with the bytes request <paramref name="id"/> writes at <paramref name="guestOffset"/> (a multiple of 8).</summary>
    public static void Fill(Span<byte> destination, int id, long guestOffset)
    {
        ulong word = (ulong)guestOffset / 8;
        for (int i = 0; i + 8 <= destination.Length; i += 8, word++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(destination[i..], Marker | ((ulong)(ushort)id << IdShift) | (word & WordMask));
        }
    }

    public static byte[] Bytes(int id, long guestOffset, int length)
    {
        byte[] bytes = new byte[length];
        Fill(bytes, id, guestOffset);
        return bytes;
    }

    /// <summary>Names what a sector holds, for failure messages: a pattern's id and guest offset, zeros, or something else.</summary>
    public static string Describe(ReadOnlySpan<byte> sector)
    {
        if (!sector.ContainsAnyExcept((byte)0))
        {
            return "zeros";
        }
        ulong first = BinaryPrimitives.ReadUInt64LittleEndian(sector);
        if ((first & (0xffUL << 56)) == Marker)
        {
            return $"pattern of #{(ushort)(first >> IdShift)} for guest 0x{(first & WordMask) * 8:x}";
        }
        return $"other bytes ({Convert.ToHexString(sector[..16])}...)";
    }
}
