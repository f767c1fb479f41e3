namespace Qed.Cli.Commands.Bench;

/// <summary>
/// Parses counts the way qemu-img's bench options accept them (C <c>strtoul</c> with base 0): leading white space,
/// an optional sign, <c>0x</c> for hex, a leading <c>0</c> for octal, and nothing after the digits.
/// </summary>
internal static class UnsignedParser
{
    /// <summary>Parses <paramref name="text"/>; false when it is not a number or exceeds <paramref name="maximum"/>.</summary>
    /// <remarks>A negative number wraps around as in C (<c>-1</c> is 2^64 − 1) and is therefore refused; only <c>-0</c> passes.</remarks>
    public static bool TryParse(string text, ulong maximum, out ulong value)
    {
        value = 0;
        int i = 0;
        while (i < text.Length && text[i] is ' ' or '\t' or '\n' or '\v' or '\f' or '\r')
        {
            i++;
        }
        bool negative = false;
        if (i < text.Length && text[i] is '+' or '-')
        {
            negative = text[i] == '-';
            i++;
        }
        uint radix = 10;
        if (i + 1 < text.Length && text[i] == '0' && text[i + 1] is 'x' or 'X' && i + 2 < text.Length && Uri.IsHexDigit(text[i + 2]))
        {
            radix = 16;
            i += 2;
        }
        else if (i < text.Length && text[i] == '0')
        {
            radix = 8;
        }
        int digitsStart = i;
        ulong result = 0;
        for (; i < text.Length; i++)
        {
            int digit = DigitValue(text[i]);
            if (digit < 0 || digit >= radix)
            {
                break;
            }
            if (result > (ulong.MaxValue - (ulong)digit) / radix)
            {
                return false;
            }
            result = result * radix + (ulong)digit;
        }
        if (i == digitsStart || i != text.Length)
        {
            return false;
        }
        if (negative && result != 0)
        {
            return false;
        }
        if (result > maximum)
        {
            return false;
        }
        value = result;
        return true;
    }

    private static int DigitValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };
}
