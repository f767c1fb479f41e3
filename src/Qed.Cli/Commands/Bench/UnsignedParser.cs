using Qed.Cli.CommandLine;

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
        uint radix = (uint)CNumberPrefix.Scan(text, ref i, out bool negative);
        int digitsStart = i;
        ulong result = 0;
        for (; i < text.Length; i++)
        {
            int digit = CNumberPrefix.DigitValue(text[i]);
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
}
