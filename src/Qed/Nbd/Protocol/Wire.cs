using System.Text;

namespace Qed.Nbd.Protocol;

/// <summary>Shared helpers of the readers.</summary>
internal static class Wire
{
    public static bool Need(ReadOnlySpan<byte> source, int size, string what, out string? error)
    {
        if (source.Length >= size)
        {
            error = null;
            return true;
        }
        return Fail(out error, $"{what} truncated: {source.Length} of {size} bytes");
    }

    public static bool Fail(out string? error, string message)
    {
        error = message;
        return false;
    }

    /// <summary>
    /// Byte length of the longest prefix of <paramref name="utf8"/> that is at most <paramref name="maxBytes"/> of
    /// UTF-8 and ends on a character boundary, so a capped message never ends in half a character.
    /// </summary>
    public static int Utf8PrefixLength(ReadOnlySpan<byte> utf8, int maxBytes)
    {
        if (utf8.Length <= maxBytes)
        {
            return utf8.Length;
        }
        int length = maxBytes;
        while (length > 0 && (utf8[length] & 0xC0) == 0x80) // utf8[length] is a continuation byte: back off
        {
            length--;
        }
        return length;
    }

    public static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);
}
