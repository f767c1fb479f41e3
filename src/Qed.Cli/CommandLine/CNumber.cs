namespace Qed.Cli.CommandLine;

/// <summary>
/// Integers read as C's <c>strtol</c>/<c>strtoul</c> read them with base 0, which qemu-img and qemu-io use for counts,
/// pattern bytes and milliseconds: leading white space, a sign, <c>0x</c> for hex, a leading <c>0</c> for octal; here
/// the whole string must be the number (the callers all refuse trailing characters).
/// </summary>
internal static class CNumber
{
    /// <summary><c>strtoul</c>: a negative number wraps around as in C (<c>-1</c> is 2^64 − 1) and so exceeds any smaller <paramref name="maximum"/>; only <c>-0</c> passes.</summary>
    /// <returns>False when <paramref name="text"/> is not a number, or is above <paramref name="maximum"/> (or 2^64 − 1).</returns>
    public static bool TryParseUnsigned(string text, ulong maximum, out ulong value)
    {
        value = 0;
        if (!TryScan(text, out bool negative, out ulong magnitude, out bool overflow) || overflow)
        {
            return false;
        }
        ulong result = negative ? unchecked(0 - magnitude) : magnitude;
        if (result > maximum)
        {
            return false;
        }
        value = result;
        return true;
    }

    /// <summary><c>strtol</c>: a value outside <c>long</c> saturates as in C and then fails the range check, as it does in qemu-io.</summary>
    /// <returns>False when <paramref name="text"/> is not a number or lies outside [<paramref name="minimum"/>, <paramref name="maximum"/>].</returns>
    public static bool TryParseSigned(string text, long minimum, long maximum, out long value)
    {
        value = 0;
        if (!TryScan(text, out bool negative, out ulong magnitude, out bool overflow))
        {
            return false;
        }
        long result = negative
            ? overflow || magnitude > (ulong)long.MaxValue + 1 ? long.MinValue : unchecked(-(long)magnitude)
            : overflow || magnitude > long.MaxValue ? long.MaxValue : (long)magnitude;
        if (result < minimum || result > maximum)
        {
            return false;
        }
        value = result;
        return true;
    }

    /// <summary>The sign and magnitude of the whole string; false when there are no digits or something follows them.</summary>
    private static bool TryScan(string text, out bool negative, out ulong magnitude, out bool overflow)
    {
        magnitude = 0;
        overflow = false;
        int i = 0;
        while (i < text.Length && text[i] is ' ' or '\t' or '\n' or '\v' or '\f' or '\r')
        {
            i++;
        }
        negative = false;
        if (i < text.Length && text[i] is '+' or '-')
        {
            negative = text[i] == '-';
            i++;
        }
        uint radix = 10;
        if (i + 2 < text.Length && text[i] == '0' && text[i + 1] is 'x' or 'X' && Uri.IsHexDigit(text[i + 2]))
        {
            radix = 16;
            i += 2;
        }
        else if (i < text.Length && text[i] == '0')
        {
            radix = 8;
        }
        int digitsStart = i;
        for (; i < text.Length; i++)
        {
            int digit = DigitValue(text[i]);
            if (digit < 0 || digit >= radix)
            {
                break;
            }
            if (magnitude > (ulong.MaxValue - (ulong)digit) / radix)
            {
                overflow = true;
            }
            else
            {
                magnitude = magnitude * radix + (ulong)digit;
            }
        }
        return i > digitsStart && i == text.Length;
    }

    private static int DigitValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };
}
