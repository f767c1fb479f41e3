using System.Buffers.Binary;

namespace Qed.Tests.Concurrency;

/// <summary>
/// Bytes that name the write they came from and where they belong: the 8-byte guest word at <c>8q</c> written by write
/// <c>id</c> holds <c>id</c> in its upper half and a mix of <c>q</c> and <c>id</c> in its lower half, so every byte
/// depends on both, a whole word names its write, and data at the wrong guest offset does not match.
/// </summary>
internal static class WritePattern
{
    /// <summary>The word write <paramref name="id"/> puts at guest word <paramref name="word"/> (offset / 8).</summary>
    public static ulong Word(int id, long word)
    {
        uint low = (uint)((ulong)word * 0x9E3779B97F4A7C15UL >> 32) ^ ((uint)id * 0x85EBCA6Bu);
        return ((ulong)(uint)id << 32) | low;
    }

    /// <summary>Fills <paramref name="destination"/> with what write <paramref name="id"/> puts at guest <paramref name="offset"/>.</summary>
    public static void Fill(int id, long offset, Span<byte> destination)
    {
        Span<byte> word = stackalloc byte[sizeof(ulong)];
        long position = offset;
        int done = 0;
        while (done < destination.Length)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(word, Word(id, position >> 3));
            int inWord = (int)(position & 7);
            int n = Math.Min(sizeof(ulong) - inWord, destination.Length - done);
            word.Slice(inWord, n).CopyTo(destination[done..]);
            done += n;
            position += n;
        }
    }

    /// <summary>True when <paramref name="actual"/>, read at guest <paramref name="offset"/>, is exactly what write <paramref name="id"/> put there.</summary>
    public static bool Matches(int id, long offset, ReadOnlySpan<byte> actual)
    {
        Span<byte> expected = stackalloc byte[512];
        for (int done = 0; done < actual.Length; done += expected.Length)
        {
            var part = actual.Slice(done, Math.Min(expected.Length, actual.Length - done));
            Fill(id, offset + done, expected[..part.Length]);
            if (!part.SequenceEqual(expected[..part.Length]))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The write id a whole aligned word inside <paramref name="segment"/> (at guest <paramref name="offset"/>) claims, or null when the segment holds no whole word.</summary>
    public static int? ClaimedId(long offset, ReadOnlySpan<byte> segment)
    {
        long word = (offset + 7) & ~7L;
        if (word + sizeof(ulong) > offset + segment.Length)
        {
            return null;
        }
        return (int)(BinaryPrimitives.ReadUInt64LittleEndian(segment[(int)(word - offset)..]) >> 32);
    }
}
